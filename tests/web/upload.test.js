import assert from "node:assert/strict";
import { test } from "node:test";

import { UploadRefused, imageSize, prepareUpload, seriesOf, seriesProblem } from "../../web/js/upload.js";
import { crc32, naturalCompare } from "../../web/js/zip.js";

/** A PNG header (signature + IHDR) of the given size: enough for the checks. */
function png(width, height) {
  const b = new Uint8Array(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  const v = new DataView(b.buffer);
  v.setUint32(16, width);
  v.setUint32(20, height);
  return b;
}

/** A JPEG with an APP0 segment before its SOF0 frame header. */
function jpeg(width, height) {
  return new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, height >> 8, height & 255, width >> 8, width & 255, 1, 0, 0, 0]);
}

const file = (name, bytes) => new File([bytes], name);

test("image sizes are read from PNG and JPEG headers", () => {
  assert.deepEqual(imageSize(png(320, 256)), { width: 320, height: 256 });
  assert.deepEqual(imageSize(jpeg(640, 480)), { width: 640, height: 480 });
  assert.equal(imageSize(new TextEncoder().encode("not an image at all")), null);
});

test("a slice's series is its name without the last number", () => {
  assert.deepEqual(seriesOf("patA_012.png"), ["pata_#", 12]);
  assert.deepEqual(seriesOf("IM-0001-0007.JPG"), ["im-0001-#", 7]);
  assert.deepEqual(seriesOf("slice10.png"), ["slice#", 10]);
  assert.deepEqual(seriesOf("top.png"), ["top", null]);
});

test("several files must be one numbered series of one size", () => {
  const s = (name, w = 64, h = 64) => ({ name, size: { width: w, height: h } });
  assert.equal(seriesProblem([s("s1.png"), s("s2.png"), s("s10.png")]), null);
  assert.match(seriesProblem([s("patA_1.png"), s("patA_2.png"), s("patB_1.png")]), /2 different series/);
  assert.match(seriesProblem([s("s1.png"), s("s2.png", 80)]), /differ in size/);
  assert.match(seriesProblem([s("s1.png"), s("s01.png")]), /both slice 1/);
  assert.match(seriesProblem([s("top.png"), s("bottom.png")]), /has no number/);
  assert.match(seriesProblem([{ name: "s1.png", size: null }]), /not a readable/);
});

test("one series of slices becomes one ZIP in natural order", async () => {
  const files = ["s10.png", "s2.png", "s1.png"].map((n) => file(n, png(32, 32)));
  const prepared = await prepareUpload(files);
  assert.equal(prepared.name, "slices.zip");
  assert.equal(prepared.contentType, "application/zip");
  assert.equal(prepared.slices, 3);
  const bytes = new Uint8Array(await prepared.blob.arrayBuffer());
  const names = [];
  for (let i = 0; i + 30 < bytes.length; i++) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === 3 && bytes[i + 3] === 4) {
      const len = bytes[i + 26] | (bytes[i + 27] << 8);
      names.push(new TextDecoder().decode(bytes.slice(i + 30, i + 30 + len)));
    }
  }
  assert.deepEqual(names, ["s1.png", "s2.png", "s10.png"]);
});

test("drops that are not one study are refused with a reason", async () => {
  const refused = async (files, pattern) => {
    await assert.rejects(prepareUpload(files), (e) => e instanceof UploadRefused && pattern.test(e.message));
  };
  await refused([], /No file/);
  await refused([file("a.mha", "x"), file("b.mha", "y")], /one study at a time/);
  await refused([file("s1.png", png(8, 8)), file("notes.pdf", "x")], /notes.pdf is not/);
  await refused([file("patA_1.png", png(8, 8)), file("patB_1.png", png(8, 8))], /2 different series/);
  await refused([file("report.pdf", "x")], /unsupported file type/);
  await refused([file("scan.mha", "")], /is empty/);
});

test("a single study keeps its name and gets its content type", async () => {
  assert.equal((await prepareUpload([file("scan.nii.gz", "x")])).contentType, "application/gzip");
  assert.equal((await prepareUpload([file("series.ZIP", "x")])).contentType, "application/zip");
  assert.equal((await prepareUpload([file("slice.jpeg", "x")])).contentType, "image/jpeg");
  assert.equal((await prepareUpload([file("scan.mha", "x")])).contentType, "application/octet-stream");
});

test("ZIP helpers: CRC-32 and natural order", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.deepEqual(["s10", "s2", "S1"].sort(naturalCompare), ["S1", "s2", "s10"]);
});
