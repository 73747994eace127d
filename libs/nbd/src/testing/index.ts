import { isNbdError, type NbdError } from '../nbd.error';

/** The NbdError `promise` rejects with; fails the test when it resolves or rejects otherwise. */
export async function nbdRejection(promise: Promise<unknown>): Promise<NbdError> {
  try {
    await promise;
  } catch (error) {
    if (isNbdError(error)) return error;
    throw error;
  }
  throw new Error('expected an NbdError');
}
