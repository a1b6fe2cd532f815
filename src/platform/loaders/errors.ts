/** A user-facing problem with an image: the CLI prints it as one line and exits 2. */
export class ImageError extends Error {}

/** 0x-prefixed hexadecimal, for messages. */
export function hex(v: number | bigint): string { return `0x${v.toString(16)}`; }
