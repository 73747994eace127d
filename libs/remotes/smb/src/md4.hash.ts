/**
 * MD4 (RFC 1320). NTLM's password hash needs it and OpenSSL 3 (Node 17+) only offers it in the
 * legacy provider, which Haven does not enable. Used on passwords only: speed does not matter.
 */
export function md4(input: Buffer): Buffer {
  const bitLength = BigInt(input.length) * 8n;
  const paddedLength = Math.ceil((input.length + 9) / 64) * 64;
  const message = Buffer.alloc(paddedLength);
  input.copy(message);
  message[input.length] = 0x80;
  message.writeBigUInt64LE(bitLength, paddedLength - 8);

  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  const x = new Array<number>(16);
  const rotate = (value: number, shift: number): number =>
    ((value << shift) | (value >>> (32 - shift))) >>> 0;
  const f = (p: number, q: number, r: number): number => (p & q) | (~p & r);
  const g = (p: number, q: number, r: number): number => (p & q) | (p & r) | (q & r);
  const h = (p: number, q: number, r: number): number => p ^ q ^ r;

  for (let block = 0; block < paddedLength; block += 64) {
    for (let index = 0; index < 16; index++) x[index] = message.readUInt32LE(block + index * 4);
    const [aa, bb, cc, dd] = [a, b, c, d];
    const word = (index: number): number => x[index] ?? 0;
    const round1 = [3, 7, 11, 19];
    for (let step = 0; step < 16; step++) {
      const shift = round1[step % 4] ?? 0;
      const value = rotate((a + f(b, c, d) + word(step)) >>> 0, shift);
      [a, b, c, d] = [d, value, b, c];
    }
    const order2 = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];
    const round2 = [3, 5, 9, 13];
    for (let step = 0; step < 16; step++) {
      const shift = round2[step % 4] ?? 0;
      const value = rotate((a + g(b, c, d) + word(order2[step] ?? 0) + 0x5a827999) >>> 0, shift);
      [a, b, c, d] = [d, value, b, c];
    }
    const order3 = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];
    const round3 = [3, 9, 11, 15];
    for (let step = 0; step < 16; step++) {
      const shift = round3[step % 4] ?? 0;
      const value = rotate((a + h(b, c, d) + word(order3[step] ?? 0) + 0x6ed9eba1) >>> 0, shift);
      [a, b, c, d] = [d, value, b, c];
    }
    a = (a + aa) >>> 0;
    b = (b + bb) >>> 0;
    c = (c + cc) >>> 0;
    d = (d + dd) >>> 0;
  }
  const digest = Buffer.alloc(16);
  digest.writeUInt32LE(a, 0);
  digest.writeUInt32LE(b, 4);
  digest.writeUInt32LE(c, 8);
  digest.writeUInt32LE(d, 12);
  return digest;
}
