/**
 * `source`, read up to `depth` items ahead of the consumer: each item is pulled as soon as there is
 * room, one pull after the other (a source need not take concurrent next() calls), and `onRead`
 * sees it at once, so that work on it (a hash on another thread) starts while the consumer is
 * still busy with earlier items. Items come out in the source's order. When the consumer stops
 * early, items read ahead and never handed out are given to `onDropped` (their buffers go back).
 */
export function readAhead<T>(
  source: AsyncIterable<T> | Iterable<T>,
  depth: number,
  onRead: (item: T) => void,
  onDropped: (item: T) => void = () => undefined,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator: AsyncIterator<T> | Iterator<T> =
        Symbol.asyncIterator in source
          ? (source)[Symbol.asyncIterator]()
          : (source)[Symbol.iterator]();
      const queue: Promise<IteratorResult<T>>[] = [];
      let last: Promise<IteratorResult<T>> = Promise.resolve({ done: false, value: undefined as T });
      let ended = false;
      const pullOne = async (before: Promise<IteratorResult<T>>): Promise<IteratorResult<T>> => {
        // After the end or a failure of the source, nothing more is asked of it.
        const previous = await before.catch(() => ({ done: true as const, value: undefined }));
        if (previous.done === true || ended) return { done: true, value: undefined };
        try {
          const result = await iterator.next();
          if (result.done === true) ended = true;
          else onRead(result.value);
          return result;
        } catch (error) {
          ended = true;
          throw error;
        }
      };
      const fill = (): void => {
        while (!ended && queue.length < depth) {
          last = pullOne(last);
          // Seen by the consumer when it reaches this item; never an unhandled rejection meanwhile.
          last.catch(() => undefined);
          queue.push(last);
        }
      };
      return {
        next: (): Promise<IteratorResult<T>> => {
          fill();
          const head = queue.shift() ?? Promise.resolve({ done: true as const, value: undefined });
          fill();
          return head;
        },
        return: async (): Promise<IteratorResult<T>> => {
          ended = true;
          for (const outcome of await Promise.allSettled(queue.splice(0))) {
            if (outcome.status === 'fulfilled' && outcome.value.done !== true) onDropped(outcome.value.value);
          }
          await iterator.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
