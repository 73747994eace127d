import { XvaFormatError } from './xva-format.error';

/** A value of XAPI's XML-RPC encoding: ova.xml stores every record this way. */
export type XmlRpcValue = string | number | boolean | Date | null | XmlRpcValue[] | XmlRpcStruct;
export interface XmlRpcStruct {
  [key: string]: XmlRpcValue;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };

function escapeXml(text: string): string {
  return text.replace(/[&<>"]/g, (char) => ESCAPES[char] ?? char);
}

/** Encodes a value; strings are written bare (`<value>text</value>`) as XAPI does. */
export function encodeXmlRpcValue(value: XmlRpcValue): string {
  if (value === null) return '<value><nil/></value>';
  if (typeof value === 'string') return `<value>${escapeXml(value)}</value>`;
  if (typeof value === 'boolean') return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (typeof value === 'number') {
    return Number.isInteger(value) && Math.abs(value) < 2 ** 31
      ? `<value><i4>${value}</i4></value>`
      : `<value><double>${value}</double></value>`;
  }
  if (value instanceof Date) {
    const iso = value
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}Z$/, 'Z');
    return `<value><dateTime.iso8601>${iso}</dateTime.iso8601></value>`;
  }
  if (Array.isArray(value))
    return `<value><array><data>${value.map(encodeXmlRpcValue).join('')}</data></array></value>`;
  const members = Object.entries(value)
    .map(([key, member]) => `<member><name>${escapeXml(key)}</name>${encodeXmlRpcValue(member)}</member>`)
    .join('');
  return `<value><struct>${members}</struct></value>`;
}

interface XmlElement {
  name: string;
  children: XmlElement[];
  text: string;
}

function decodeEntities(text: string, at: number): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    switch (entity) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default: {
        const code = entity.startsWith('#x') ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10);
        if (code > 0x10ffff) throw syntax(`character reference &${entity}; is out of range`, at);
        return String.fromCodePoint(code);
      }
    }
  });
}

function syntax(message: string, at: number): XvaFormatError {
  return new XvaFormatError(
    'XVA_OVA_XML_SYNTAX',
    `ova.xml is not valid XML-RPC: ${message} at character ${at}`,
    'ova.xml',
  );
}

/** A small, strict XML reader for the XML-RPC subset: elements and text, no attributes needed. */
function parseXml(xml: string): XmlElement {
  let position = 0;
  const root: XmlElement = { name: '#root', children: [], text: '' };
  const stack: XmlElement[] = [root];
  const maxDepth = 256;
  while (position < xml.length) {
    const open = xml.indexOf('<', position);
    const top = stack[stack.length - 1];
    if (open === -1) {
      if (xml.slice(position).trim() !== '') throw syntax('text after the document', position);
      break;
    }
    if (open > position) top.text += decodeEntities(xml.slice(position, open), position);
    if (xml.startsWith('<?', open)) {
      const end = xml.indexOf('?>', open);
      if (end === -1) throw syntax('unterminated processing instruction', open);
      position = end + 2;
    } else if (xml.startsWith('<!--', open)) {
      const end = xml.indexOf('-->', open);
      if (end === -1) throw syntax('unterminated comment', open);
      position = end + 3;
    } else if (xml.startsWith('<![CDATA[', open)) {
      const end = xml.indexOf(']]>', open);
      if (end === -1) throw syntax('unterminated CDATA', open);
      top.text += xml.slice(open + 9, end);
      position = end + 3;
    } else if (xml.startsWith('<!', open)) {
      throw syntax('DTDs are not accepted', open);
    } else {
      const end = xml.indexOf('>', open);
      if (end === -1) throw syntax('unterminated tag', open);
      const body = xml.slice(open + 1, end);
      position = end + 1;
      if (body.startsWith('/')) {
        const name = body.slice(1).trim();
        if (top.name !== name) throw syntax(`</${name}> closes <${top.name}>`, open);
        stack.pop();
        continue;
      }
      const selfClosing = body.endsWith('/');
      const name = (selfClosing ? body.slice(0, -1) : body).trim().split(/\s/)[0] ?? '';
      if (!/^[A-Za-z_][\w.-]*$/.test(name)) throw syntax(`bad tag name "${name}"`, open);
      const element: XmlElement = { name, children: [], text: '' };
      top.children.push(element);
      if (!selfClosing) {
        if (stack.length > maxDepth) throw syntax(`nesting deeper than ${maxDepth}`, open);
        stack.push(element);
      }
    }
  }
  if (stack.length !== 1) throw syntax(`<${stack[stack.length - 1].name}> is never closed`, xml.length);
  return root;
}

function only(element: XmlElement, name: string): XmlElement {
  const child = element.children.find((candidate) => candidate.name === name);
  if (child === undefined) throw syntax(`<${element.name}> lacks <${name}>`, 0);
  return child;
}

function decodeValueElement(element: XmlElement): XmlRpcValue {
  if (element.name !== 'value') throw syntax(`expected <value>, found <${element.name}>`, 0);
  const typed = element.children.at(0);
  if (typed === undefined) return element.text;
  switch (typed.name) {
    case 'string':
      return typed.text;
    case 'i4':
    case 'int':
    case 'i8':
    case 'double': {
      const number = Number(typed.text.trim());
      if (!Number.isFinite(number))
        throw syntax(`<${typed.name}>${typed.text}</${typed.name}> is not a number`, 0);
      return number;
    }
    case 'boolean':
      return typed.text.trim() === '1';
    case 'nil':
      return null;
    case 'dateTime.iso8601': {
      const match = /^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):(\d{2}):(\d{2})(Z|[+-]\d{2}:?\d{2})?$/.exec(
        typed.text.trim(),
      );
      if (match === null) return typed.text;
      const [, y, mo, d, h, mi, s] = match;
      const zone = match.at(7);
      return new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}${zone ?? 'Z'}`);
    }
    case 'array':
      return only(typed, 'data').children.map(decodeValueElement);
    case 'struct': {
      const struct: XmlRpcStruct = {};
      for (const member of typed.children) {
        if (member.name !== 'member') throw syntax(`<struct> holds <${member.name}>`, 0);
        struct[only(member, 'name').text] = decodeValueElement(only(member, 'value'));
      }
      return struct;
    }
    default:
      throw syntax(`unknown XML-RPC type <${typed.name}>`, 0);
  }
}

/** Decodes a document whose root is one XML-RPC `<value>` (the shape of ova.xml). */
export function decodeXmlRpcDocument(xml: string): XmlRpcValue {
  const root = parseXml(xml);
  const value = root.children.at(0);
  if (value === undefined || root.children.length !== 1)
    throw syntax('the document must hold exactly one <value>', 0);
  return decodeValueElement(value);
}
