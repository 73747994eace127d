import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RpcDispatcher } from '../rpc/rpc.dispatcher';
import type { XapiValue } from '../rpc/xapi-value';
import { decodeMethodCall, encodeFailure, encodeSuccess, XmlRpcParseError } from '../rpc/xml-rpc.codec';
import { readText } from './http-request.body';

function send(response: ServerResponse, contentType: string, body: string, status = 200): void {
  // The xen-api client picks its transport from this exact header value.
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

interface JsonRpcRequest {
  jsonrpc?: string;
  id?: string | number | null;
  method?: unknown;
  params?: unknown;
}

/** POST /jsonrpc: JSON-RPC 2.0 (1.0 tolerated); XAPI failures as `{message: code, data: params}`. */
export async function handleJsonRpc(
  request: IncomingMessage,
  response: ServerResponse,
  dispatcher: Pick<RpcDispatcher, 'call'>,
): Promise<void> {
  let payload: JsonRpcRequest;
  try {
    payload = JSON.parse(await readText(request)) as JsonRpcRequest;
  } catch {
    send(
      response,
      'application/json',
      JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }),
    );
    return;
  }
  const id = payload.id ?? null;
  if (typeof payload.method !== 'string') {
    send(
      response,
      'application/json',
      JSON.stringify({
        jsonrpc: '2.0',
        id,
        error: { code: -32600, message: 'Invalid Request: method must be a string' },
      }),
    );
    return;
  }
  const params = Array.isArray(payload.params) ? (payload.params as XapiValue[]) : [];
  const outcome = await dispatcher.call(payload.method, params);
  const version = payload.jsonrpc === '2.0' ? { jsonrpc: '2.0' } : {};
  const body = outcome.ok
    ? { ...version, id, result: outcome.value }
    : { ...version, id, error: { code: 1, message: outcome.failure.code, data: outcome.failure.params } };
  send(response, 'application/json', JSON.stringify(body));
}

/** POST / (and /xmlrpc): XML-RPC with XAPI's `{Status, Value | ErrorDescription}` envelope. */
export async function handleXmlRpc(
  request: IncomingMessage,
  response: ServerResponse,
  dispatcher: Pick<RpcDispatcher, 'call'>,
): Promise<void> {
  let call;
  try {
    call = decodeMethodCall(await readText(request));
  } catch (error) {
    if (!(error instanceof XmlRpcParseError)) throw error;
    send(response, 'text/xml', encodeFailure(['XMLRPC_UNMARSHAL_FAILURE', error.message]));
    return;
  }
  const outcome = await dispatcher.call(call.method, call.params);
  send(
    response,
    'text/xml',
    outcome.ok ? encodeSuccess(outcome.value) : encodeFailure(outcome.failure.errorDescription),
  );
}
