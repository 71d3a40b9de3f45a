/**
 * Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999): rewrites a
 * block so that it contains no 0x00 byte, at a cost of one byte per 254, so
 * 0x00 can delimit frames. A receiver that loses its place resynchronises at
 * the next 0x00, whatever garbage came before.
 */

/**
 * Largest encoded size of `n` bytes: one code byte to start, and one more
 * after every full run of 254 non-zero bytes (a zero costs nothing: its code
 * byte takes its place). 16,384 bytes stuff to at most 16,449.
 */
export function cobsMaxEncodedLength(n: number): number {
  return n + Math.floor(n / 254) + 1;
}

/**
 * Encodes `data` (which may contain any byte); the result has no 0x00. A
 * block that ends on a full run of 254 non-zero bytes ends with the code
 * byte 0x01 (an empty last piece); the decoder also accepts it without.
 */
export function cobsEncode(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(cobsMaxEncodedLength(data.length));
  let codeAt = 0;
  let o = 1;
  let code = 1;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0) {
      out[codeAt] = code;
      codeAt = o++;
      code = 1;
    } else {
      out[o++] = b;
      code++;
      if (code === 0xff) {
        out[codeAt] = code;
        codeAt = o++;
        code = 1;
      }
    }
  }
  out[codeAt] = code;
  return out.subarray(0, o);
}

/**
 * Decodes one COBS block (without its delimiter). Returns null when the block
 * is not valid COBS (a 0x00 inside it, or a code byte pointing past its end).
 */
export function cobsDecode(block: Uint8Array): Uint8Array | null {
  const out = new Uint8Array(block.length);
  let o = 0;
  let i = 0;
  while (i < block.length) {
    const code = block[i]!;
    if (code === 0) return null;
    const end = i + code;
    if (end > block.length) return null;
    for (let j = i + 1; j < end; j++) {
      const b = block[j]!;
      if (b === 0) return null;
      out[o++] = b;
    }
    i = end;
    // A code below 0xFF stands for its run plus a zero, except at the very end.
    if (code < 0xff && i < block.length) out[o++] = 0;
  }
  return out.subarray(0, o);
}
