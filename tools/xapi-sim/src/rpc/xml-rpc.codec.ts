import {
  DATETIME_FIELDS,
  FLOAT_FIELDS,
  INT32_MAP_FIELDS,
  type XapiStruct,
  type XapiValue,
} from './xapi-value';

/** The request could not be read as an XML-RPC `methodCall`. */
export class XmlRpcParseError extends Error {
  readonly code = 'XMLRPC_PARSE_ERROR';
  constructor(message: string, offset: number) {
    super(`XML-RPC request is malformed at offset ${offset}: ${message}; send a <methodCall> document`);
    this.name = 'XmlRpcParseError';
  }
}

interface XmlElement {
  name: string;
  children: (XmlElement | string)[];
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|lt|gt|amp|quot|apos);/g, (_, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    return ENTITIES[entity] ?? '';
  });
}

/** A small XML reader for the XML-RPC subset: elements, text, self-closing tags; no attributes used. */
function parseXmlDocument(xml: string): XmlElement {
  let pos = 0;
  const root: XmlElement = { name: '#document', children: [] };
  const stack: XmlElement[] = [root];
  while (pos < xml.length) {
    const lt = xml.indexOf('<', pos);
    const top = stack[stack.length - 1] ?? root;
    if (lt === -1) {
      top.children.push(decodeEntities(xml.slice(pos)));
      break;
    }
    if (lt > pos) top.children.push(decodeEntities(xml.slice(pos, lt)));
    if (xml.startsWith('<?', lt)) {
      const end = xml.indexOf('?>', lt);
      if (end === -1) throw new XmlRpcParseError('unterminated declaration', lt);
      pos = end + 2;
      continue;
    }
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt);
      if (end === -1) throw new XmlRpcParseError('unterminated comment', lt);
      pos = end + 3;
      continue;
    }
    if (xml.startsWith('<![CDATA[', lt)) {
      const end = xml.indexOf(']]>', lt);
      if (end === -1) throw new XmlRpcParseError('unterminated CDATA', lt);
      top.children.push(xml.slice(lt + 9, end));
      pos = end + 3;
      continue;
    }
    const gt = xml.indexOf('>', lt);
    if (gt === -1) throw new XmlRpcParseError('unterminated tag', lt);
    const tag = xml.slice(lt + 1, gt).trim();
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open === undefined || open.name !== name) throw new XmlRpcParseError(`unexpected </${name}>`, lt);
    } else {
      const selfClosing = tag.endsWith('/');
      const name = (selfClosing ? tag.slice(0, -1) : tag).trim().split(/\s+/)[0] ?? '';
      const element: XmlElement = { name, children: [] };
      top.children.push(element);
      if (!selfClosing) stack.push(element);
    }
    pos = gt + 1;
  }
  if (stack.length !== 1)
    throw new XmlRpcParseError(`unclosed <${stack[stack.length - 1]?.name ?? ''}>`, xml.length);
  return root;
}

function elements(node: XmlElement): XmlElement[] {
  return node.children.filter((child): child is XmlElement => typeof child !== 'string');
}

function text(node: XmlElement): string {
  return node.children.filter((child): child is string => typeof child === 'string').join('');
}

function child(node: XmlElement, name: string): XmlElement {
  const found = elements(node).find((element) => element.name === name);
  if (found === undefined) throw new XmlRpcParseError(`<${node.name}> lacks <${name}>`, 0);
  return found;
}

function decodeValue(value: XmlElement): XapiValue {
  const typed = elements(value).at(0);
  if (typed === undefined) return text(value);
  switch (typed.name) {
    case 'string':
      return text(typed);
    case 'int':
    case 'i4':
    case 'i8':
    case 'double':
      return Number(text(typed).trim());
    case 'boolean':
      return text(typed).trim() === '1';
    case 'dateTime.iso8601':
      return text(typed).trim();
    case 'base64':
      return text(typed).replace(/\s+/g, '');
    case 'nil':
      return null;
    case 'array':
      return elements(child(typed, 'data')).map(decodeValue);
    case 'struct': {
      const struct: XapiStruct = {};
      for (const member of elements(typed)) {
        struct[text(child(member, 'name'))] = decodeValue(child(member, 'value'));
      }
      return struct;
    }
    default:
      throw new XmlRpcParseError(`unknown value type <${typed.name}>`, 0);
  }
}

export interface XmlRpcCall {
  method: string;
  params: XapiValue[];
}

export function decodeMethodCall(xml: string): XmlRpcCall {
  const document = parseXmlDocument(xml);
  const call = child(document, 'methodCall');
  const method = text(child(call, 'methodName')).trim();
  const paramsNode = elements(call).find((element) => element.name === 'params');
  const params =
    paramsNode === undefined ? [] : elements(paramsNode).map((param) => decodeValue(child(param, 'value')));
  return { method, params };
}

const DATETIME_TEXT = /^\d{8}T\d{2}:\d{2}:\d{2}Z$/;

function escapeXml(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function toXmlRpcDateTime(value: string): string {
  // Records hold `20261126T07:00:00Z`; XML-RPC carries the same text.
  return escapeXml(value);
}

/** Encodes a value as XAPI does: strings bare, int64 as strings, floats as doubles. */
export function encodeValue(value: XapiValue, field?: string, int32 = false): string {
  if (value === null) return '<value><nil/></value>';
  if (typeof value === 'string') {
    if (field !== undefined && DATETIME_FIELDS.has(field) && DATETIME_TEXT.test(value)) {
      return `<value><dateTime.iso8601>${toXmlRpcDateTime(value)}</dateTime.iso8601></value>`;
    }
    return `<value>${escapeXml(value)}</value>`;
  }
  if (typeof value === 'boolean') return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (typeof value === 'number') {
    if ((field !== undefined && FLOAT_FIELDS.has(field)) || !Number.isInteger(value)) {
      return `<value><double>${Number.isInteger(value) ? value.toFixed(1) : String(value)}</double></value>`;
    }
    return int32 ? `<value><i4>${String(value)}</i4></value>` : `<value>${String(value)}</value>`;
  }
  if (Array.isArray(value)) {
    return `<value><array><data>${value.map((item) => encodeValue(item, field)).join('')}</data></array></value>`;
  }
  const members = Object.entries(value)
    .map(
      ([key, item]) =>
        `<member><name>${escapeXml(key)}</name>${encodeValue(item, key, field !== undefined && INT32_MAP_FIELDS.has(field))}</member>`,
    )
    .join('');
  return `<value><struct>${members}</struct></value>`;
}

function methodResponse(status: XapiStruct): string {
  return `<?xml version="1.0"?><methodResponse><params><param>${encodeValue(status)}</param></params></methodResponse>`;
}

export function encodeSuccess(value: XapiValue): string {
  return methodResponse({ Status: 'Success', Value: value });
}

export function encodeFailure(errorDescription: readonly string[]): string {
  return methodResponse({ Status: 'Failure', ErrorDescription: [...errorDescription] });
}
