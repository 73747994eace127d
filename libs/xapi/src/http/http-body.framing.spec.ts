import { HttpBodyFraming } from './http-body.framing';
import { HttpProtocolError, parseHttpResponseHead } from './http-response.head';

function framingOf(headers: Record<string, string>): HttpBodyFraming {
  return new HttpBodyFraming({ headers });
}

/** Feeds `wire` cut at the given offsets; returns the body handed on and the framing. */
function feed(framing: HttpBodyFraming, wire: Buffer, cuts: number[]): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, wire.length]) {
    framing.take(wire.subarray(start, cut), (data) => parts.push(Buffer.from(data)));
    start = cut;
  }
  return Buffer.concat(parts);
}

function chunkedWire(pieces: Buffer[], trailer = ''): Buffer {
  const wire: Buffer[] = [];
  for (const piece of pieces) {
    wire.push(Buffer.from(`${piece.length.toString(16)};ext=1\r\n`), piece, Buffer.from('\r\n'));
  }
  wire.push(Buffer.from(`0\r\n${trailer}\r\n`));
  return Buffer.concat(wire);
}

describe('parseHttpResponseHead', () => {
  it('waits for the blank line, then gives status, lower-case fields and the head length', () => {
    const wire = Buffer.from(
      'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Twice: a\r\nx-twice: b\r\n\r\nbody bytes',
    );
    expect(parseHttpResponseHead(wire.subarray(0, 40))).toBeUndefined();
    const head = parseHttpResponseHead(wire);
    expect(head).toEqual({
      statusCode: 200,
      statusMessage: 'OK',
      headers: { 'content-length': '10', 'x-twice': 'a, b' },
      length: wire.length - 'body bytes'.length,
    });
  });

  it('refuses what is not an HTTP/1.x head, naming it', () => {
    expect(() => parseHttpResponseHead(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(
      /not an HTTP\/1.x status line: "SSH-2.0-OpenSSH"/,
    );
    expect(() => parseHttpResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n'))).toThrow(
      /malformed response header field: "no colon here"/,
    );
    expect(() => parseHttpResponseHead(Buffer.alloc(70 * 1024, 0x61))).toThrow(HttpProtocolError);
  });
});

describe('HttpBodyFraming', () => {
  const body = Buffer.from(Array.from({ length: 300 }, (_, index) => index % 251));

  it('cuts a content-length body at its length wherever the reads end', () => {
    const wire = Buffer.concat([body, Buffer.from('bytes after the body')]);
    for (const cuts of [[], [1], [150, 299], [300], [299, 301]]) {
      const framing = framingOf({ 'content-length': String(body.length) });
      expect(feed(framing, wire, cuts)).toEqual(body);
      expect(framing.done).toBe(true);
      expect(framing.received).toBe(300);
    }
  });

  it('says how much of a content-length body arrived when the connection closes early', () => {
    const framing = framingOf({ 'content-length': '300' });
    feed(framing, body.subarray(0, 120), []);
    expect(framing.done).toBe(false);
    expect(() => framing.closed()).toThrow(
      'the connection closed after 120 body bytes, before 300 bytes announced by content-length',
    );
  });

  it('decodes a chunked body cut at every byte boundary, trailers included', () => {
    const wire = chunkedWire([body.subarray(0, 7), body.subarray(7, 200), body.subarray(200)], 'X-T: 1\r\n');
    for (let cut = 0; cut <= wire.length; cut++) {
      const framing = framingOf({ 'transfer-encoding': 'chunked' });
      expect(feed(framing, wire, [cut])).toEqual(body);
      expect(framing.done).toBe(true);
    }
    const byteByByte = framingOf({ 'transfer-encoding': 'chunked' });
    expect(
      feed(
        byteByByte,
        wire,
        Array.from({ length: wire.length }, (_, index) => index),
      ),
    ).toEqual(body);
  });

  it('hands chunked data on as views of the bytes read (no copy)', () => {
    const wire = chunkedWire([body]);
    const views: Buffer[] = [];
    framingOf({ 'transfer-encoding': 'chunked' }).take(wire, (data) => views.push(data));
    expect(views).toHaveLength(1);
    expect(views[0]?.buffer).toBe(wire.buffer);
  });

  it('refuses a broken chunked body and one cut before its last chunk', () => {
    const badSize = framingOf({ 'transfer-encoding': 'chunked' });
    expect(() => feed(badSize, Buffer.from('zz\r\nabc'), [])).toThrow(/invalid chunk-size line "zz"/);
    const noCrlf = framingOf({ 'transfer-encoding': 'chunked' });
    expect(() => feed(noCrlf, Buffer.from('3\r\nabcX'), [])).toThrow(/not followed by CRLF/);
    const cut = framingOf({ 'transfer-encoding': 'chunked' });
    feed(cut, chunkedWire([body]).subarray(0, 100), []);
    expect(() => cut.closed()).toThrow(/before the last chunk of the chunked body/);
    expect(() => framingOf({ 'transfer-encoding': 'gzip' })).toThrow(/unsupported transfer-encoding "gzip"/);
    expect(() => framingOf({ 'content-length': '-1' })).toThrow(/invalid content-length "-1"/);
  });

  it('takes everything up to the close when there is neither length nor chunking', () => {
    const framing = framingOf({});
    expect(feed(framing, body, [10, 20])).toEqual(body);
    expect(framing.done).toBe(false);
    framing.closed();
    expect(framing.done).toBe(true);
  });

  it('is done at once for an empty content-length body', () => {
    const framing = framingOf({ 'content-length': '0' });
    expect(framing.done).toBe(true);
    expect(feed(framing, Buffer.from('ignored'), [])).toEqual(Buffer.alloc(0));
  });
});
