// Upload: the chosen files become one checked study upload (pure preparation, unit-tested), then
// a presigned POST straight to S3 with progress.

import { makeZip, naturalCompare } from "./zip.js";

export const MAX_BYTES = 512 * 1024 * 1024;
export const VOLUME_EXT = [".mha", ".nii", ".nii.gz", ".zip"];
export const SLICE_EXT = [".png", ".jpg", ".jpeg"];

/** A refusal the user can act on; the message says what to do. */
export class UploadRefused extends Error {}

/** @typedef {{name: string, blob: Blob, contentType: string, slices: number}} PreparedUpload */

const lower = (/** @type {string} */ name) => name.toLowerCase();
const hasExt = (/** @type {string} */ name, /** @type {string[]} */ exts) => exts.some((e) => lower(name).endsWith(e));
const megabytes = (/** @type {number} */ n) => `${(n / 1048576).toFixed(0)} MB`;

/**
 * Width and height from a PNG or JPEG header, or null when the bytes are neither.
 * @param {Uint8Array} b
 * @returns {{width: number, height: number} | null}
 */
export function imageSize(b) {
  if (b.length >= 24 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return { width: v.getUint32(16), height: v.getUint32(20) };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return null;
      const marker = b[i + 1];
      const length = (b[i + 2] << 8) | b[i + 3];
      // SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry the frame size
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { height: (b[i + 5] << 8) | b[i + 6], width: (b[i + 7] << 8) | b[i + 8] };
      }
      i += 2 + length;
    }
  }
  return null;
}

/**
 * Which series a slice file belongs to and its number in it: "patA_012.png" -> ["pata_#", 12].
 * The series is the name with its last number taken out.
 * @param {string} name
 * @returns {[string, number | null]}
 */
export function seriesOf(name) {
  const stem = lower(name).replace(/\.(png|jpe?g)$/, "");
  const match = stem.match(/^(.*?)(\d+)(\D*)$/);
  return match ? [`${match[1]}#${match[3]}`, Number(match[2])] : [stem, null];
}

/**
 * Why several slice files are not one study of one series, or null when they are: one naming
 * pattern with distinct numbers, one image size.
 * @param {{name: string, size: {width: number, height: number} | null}[]} slices
 * @returns {string | null}
 */
export function seriesProblem(slices) {
  const unreadable = slices.find((s) => !s.size);
  if (unreadable) return `${unreadable.name} is not a readable PNG or JPEG image.`;
  const series = new Map();
  for (const s of slices) {
    const [key, number] = seriesOf(s.name);
    if (number === null) return `Several slices must be numbered files of one series (slice1.png, slice2.png, …); ${s.name} has no number.`;
    if (!series.has(key)) series.set(key, []);
    series.get(key).push({ ...s, number });
  }
  if (series.size > 1) {
    const examples = [...series.values()].slice(0, 3).map((group) => group[0].name).join(", ");
    return `These ${slices.length} files look like ${series.size} different series (${examples}). Drop the slices of one series at a time.`;
  }
  const [group] = [...series.values()];
  const seen = new Map();
  for (const s of group) {
    if (seen.has(s.number)) return `${seen.get(s.number)} and ${s.name} are both slice ${s.number}: drop one series, once.`;
    seen.set(s.number, s.name);
  }
  const sizes = new Set(slices.map((s) => `${s.size.width}x${s.size.height}`));
  if (sizes.size > 1) return `The slices differ in size (${[...sizes].slice(0, 3).join(", ")}): they are not one series.`;
  return null;
}

/**
 * Checks the chosen files and turns them into one upload. One volume file, or several PNG/JPEG
 * slices of one series (zipped here, in natural order). Throws UploadRefused with the reason.
 * @param {File[]} files
 * @returns {Promise<PreparedUpload>}
 */
export async function prepareUpload(files) {
  if (!files.length) throw new UploadRefused("No file chosen.");
  if (files.length > 1) {
    const volumes = files.filter((f) => !hasExt(f.name, SLICE_EXT));
    if (volumes.length) {
      throw new UploadRefused(volumes.length === files.length
        ? `Drop one study at a time (${files.length} files: ${files.map((f) => f.name).slice(0, 3).join(", ")}).`
        : `Several files must all be PNG or JPEG slices of one series; ${volumes[0].name} is not.`);
    }
    const total = files.reduce((s, f) => s + f.size, 0);
    if (total > MAX_BYTES) throw new UploadRefused(`The slices add up to ${megabytes(total)}; the limit is 512 MB.`);
    const entries = [];
    for (const f of [...files].sort((a, b) => naturalCompare(a.name, b.name))) {
      const bytes = new Uint8Array(await f.arrayBuffer());
      entries.push({ name: f.name, bytes, size: imageSize(bytes) });
    }
    const problem = seriesProblem(entries);
    if (problem) throw new UploadRefused(problem);
    return { name: "slices.zip", blob: makeZip(entries), contentType: "application/zip", slices: entries.length };
  }
  const file = files[0];
  if (!hasExt(file.name, VOLUME_EXT.concat(SLICE_EXT))) {
    throw new UploadRefused(`${file.name}: unsupported file type. Use MHA, NIfTI, a DICOM ZIP, PNG or JPEG.`);
  }
  if (file.size === 0) throw new UploadRefused(`${file.name} is empty.`);
  if (file.size > MAX_BYTES) throw new UploadRefused(`${file.name} is ${megabytes(file.size)}; the limit is 512 MB.`);
  const name = lower(file.name);
  const contentType = name.endsWith(".zip") ? "application/zip"
    : name.endsWith(".gz") ? "application/gzip"
      : name.endsWith(".png") ? "image/png"
        : hasExt(name, [".jpg", ".jpeg"]) ? "image/jpeg" : "application/octet-stream";
  return { name: file.name, blob: file, contentType, slices: 1 };
}

/**
 * POSTs the file to S3 with the presigned form fields.
 * @param {{url: string, fields: Record<string, string>}} target
 * @param {Blob} blob
 * @param {(fraction: number) => void} onProgress
 * @returns {Promise<void>}
 */
export function postToS3(target, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    Object.entries(target.fields).forEach(([k, v]) => form.append(k, v));
    form.append("file", blob);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", target.url);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(`The upload was refused (HTTP ${xhr.status}).`)));
    xhr.onerror = () => reject(new Error("The upload failed: network error."));
    xhr.send(form);
  });
}
