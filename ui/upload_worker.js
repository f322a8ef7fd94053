// The drop zone's work off the page's main thread (ui/dropzone.js starts it as a module Web Worker,
// twice: one for the upload socket, one for local previews; where no worker starts, the page
// imports the same functions and runs them itself).
//
// - socketUploader: opens the page's upload WebSocket, streams a batch of files over it in binary
//   chunks, never more than WINDOW bytes ahead of the server's acknowledgements. The page hands a
//   batch over a slice of Files per message ("batch", then "more"), and the first files go out
//   while the rest are handed over. Through `post` it reports each slice's sizes (with the files
//   over the batch's `limits`: those are not sent), each file's progress and verdict, and the
//   thumbnail the server sends after a stored image's result (a data: URL, for ui/thumbnails.js).
// - localPreview: a picture of a file for its tile before the server's thumbnail: the small JPEG
//   that phones and cameras embed in the EXIF block (JPEG APP1, IFD1), read from the file's first
//   EXIF_READ bytes without decoding anything; otherwise, when asked, a decode near tile size.
//
// Every loop over the file's bytes is bounded and every offset is checked against what was read:
// the file is the user's, but its bytes are as untrusted here as on the server.

// Bytes per binary message, sent as a slice of the File itself (a file of one chunk as the File):
// Chromium then reads it for the socket without copying it through this thread (a 3 MP drop stored
// 17 % sooner than reading ArrayBuffers and sending those); slices much smaller are slow to send.
const CHUNK = 4 * 1024 * 1024;
const WINDOW = 8 * 1024 * 1024; // bytes sent but not yet acknowledged, and bytes buffered by the browser
const OPEN_TIMEOUT = 5000; // ms to wait for the server's "ready" before falling back to HTTP
const EXIF_READ = 128 * 1024; // bytes read looking for the EXIF block (an APP1 segment is at most 64 KiB)
const MAX_SEGMENTS = 64; // JPEG segments skipped looking for it
const MAX_IFD_ENTRIES = 512; // tag entries read in one EXIF directory
const PREVIEW_WIDTH = 256; // the decoded size asked for a local preview (a tile is 190 x 150 CSS pixels)
const PREVIEW_HEIGHT = 192;
// JPEG markers (ITU T.81 B.1.1.3) and EXIF tags (CIPA DC-008) the embedded preview is found by.
const SOI = 0xffd8;
const APP1 = 0xe1;
const SOS = 0xda;
const EOI = 0xd9;
const EXIF_HEADER = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"
const TIFF_LITTLE_ENDIAN = 0x4949; // "II"
const TIFF_BIG_ENDIAN = 0x4d4d; // "MM"
const TIFF_MAGIC = 42;
const ORIENTATION = 0x0112;
const THUMBNAIL_OFFSET = 0x0201; // JPEGInterchangeFormat
const THUMBNAIL_LENGTH = 0x0202; // JPEGInterchangeFormatLength
const SHORT = 3;

const THUMBNAIL_MIMES = ["image/jpeg", "image/png", "image/webp"]; // what a server's thumbnail is

// A thumbnail or a local preview as a data: URL: an object URL would cost the page's main thread a
// synchronous round trip to the browser process per image (0.9 ms each on a busy core, in a CPU
// profile), a data: URL of a few KiB none.
function dataUrl(buffer, mime) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  let text = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
  }
  return `data:${mime};base64,${btoa(text)}`;
}

// Whether a file of `size` bytes is over the page's `limits` ({ image, archive }: the server's own,
// which it enforces; the page holds such a file back so that it cannot stop the others).
export function overLimit(size, archive, limits) {
  return size > (archive ? limits.archive : limits.image);
}

// The upload socket (see the top of this file).
export function socketUploader(post) {
  let spare = null; // a promise of an open socket that has said "ready"

  const connect = (url) =>
    new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (error) {
        reject(new Error(String(error)));
        return;
      }
      ws.binaryType = "arraybuffer";
      const timer = setTimeout(() => {
        ws.onmessage = ws.onclose = null;
        ws.close();
        reject(new Error("no answer"));
      }, OPEN_TIMEOUT);
      ws.onmessage = (event) => {
        let message = {};
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type !== "ready") return;
        clearTimeout(timer);
        ws.onmessage = ws.onclose = null;
        resolve(ws);
      };
      ws.onclose = () => {
        clearTimeout(timer);
        reject(new Error("closed before ready"));
      };
    });

  const prepare = (url) => {
    if (spare) return;
    const opening = connect(url);
    spare = opening;
    opening.then(
      (ws) => {
        ws.onclose = () => {
          if (spare === opening) spare = null; // closed while idle (a restart, a proxy)
        };
      },
      () => {
        if (spare === opening) spare = null;
      },
    );
  };

  let feeding = null; // the feed of the batch being sent (see stream)
  const handOver = (feed, message) => {
    const items = message.files.map((file) => ({ ...file, state: "queued", size: 0, sent: 0, acked: 0 }));
    feed.batch.push(...items);
    feed.more = Boolean(message.more);
    if (feed.added) feed.added(items);
  };

  const take = async (url) => {
    const opening = spare;
    spare = null;
    if (opening) {
      try {
        const ws = await opening;
        if (ws.readyState === WebSocket.OPEN) return ws;
      } catch (error) {
        // the spare failed: one fresh attempt decides
      }
    }
    return connect(url);
  };

  // `feed`: the batch as the page hands it over, a slice of Files per message ("batch", then
  // "more" until `more` is false): { batch, more, limits, added }.
  const stream = (ws, feed) =>
    new Promise((resolve) => {
      const { batch, limits } = feed;
      const announced = []; // the files whose header was sent, in order: a result's "file" indexes it
      let closed = false;
      let finished = false;
      let stopDetail = "";
      let wakers = [];
      const wake = () => {
        const waiting = wakers;
        wakers = [];
        waiting.forEach((resolveWaiter) => resolveWaiter());
      };
      const inFlight = () => batch.reduce((sum, item) => sum + (item.state === "uploading" ? item.sent - item.acked : 0), 0);
      const receiving = () => batch.find((item) => item.state === "uploading" && item.acked < item.size);
      const awaiting = () => batch.filter((item) => item.state === "uploading" || item.state === "checking");
      const settle = (item, status, image, duplicateOf, detail) => {
        item.state = "settled";
        post({ type: "verdict", id: item.id, status, image, duplicateOf, detail });
        wake();
      };

      // Every size first, one message per slice handed over: the page holds back the files over
      // their limit at once (one notice per drop, and no tile or preview for them) and knows how
      // many bytes are ahead of each tile. Read here, not on the page: the first read of a picked
      // File's size is a synchronous round trip to the browser process; a File handed to this
      // worker brought its size along.
      const sizeUp = (items) => {
        const sizes = [];
        for (const item of items) {
          item.size = item.file ? item.file.size : 0;
          const held = overLimit(item.size, item.archive, limits);
          if (held) {
            item.state = "held"; // not sent
            item.file = null;
          }
          sizes.push([item.id, item.size, held]);
        }
        post({ type: "sizes", sizes });
      };
      sizeUp(batch);
      feed.added = (items) => {
        sizeUp(items);
        wake();
      };

      const send = async () => {
        for (let index = 0; ; index++) {
          while (!closed && index >= batch.length && feed.more) {
            await new Promise((resolveWaiter) => wakers.push(resolveWaiter)); // the next slice
          }
          if (closed) return;
          if (index >= batch.length) break;
          const item = batch[index];
          if (item.state === "held") continue;
          item.state = "uploading";
          post({ type: "uploading", id: item.id });
          announced.push(item);
          ws.send(JSON.stringify({ filename: item.name, size: item.size }));
          for (let offset = 0; offset < item.size; ) {
            // Backpressure: the server acknowledges every chunk it has read.
            while (!closed && item.state === "uploading" && (inFlight() >= WINDOW || ws.bufferedAmount >= WINDOW)) {
              await new Promise((resolveWaiter) => {
                wakers.push(resolveWaiter);
                setTimeout(resolveWaiter, 50); // bufferedAmount has no event
              });
            }
            if (closed) return;
            if (item.state !== "uploading") break; // refused from its header: the rest is not sent
            const length = Math.min(CHUNK, item.size - offset);
            // A file of one chunk is sent as itself: each slice is a new Blob, registered with the
            // browser process (0.18 ms a file in a drop of 300 small photos).
            ws.send(length === item.size ? item.file : item.file.slice(offset, offset + length));
            offset += length;
            item.sent = offset;
          }
          if (item.size === 0 && item.state === "uploading") item.state = "checking";
          item.file = null;
        }
        if (!closed) ws.send(JSON.stringify({ type: "done" }));
      };

      const verdict = (message) => {
        // "file" is the index of the file's header on this socket.
        const item = announced[message.file];
        if (!item || (item.state !== "uploading" && item.state !== "checking")) return;
        if (message.member) {
          if (message.status === 200 && message.image) post({ type: "member", id: item.id });
          return;
        }
        settle(item, message.status, message.image, message.duplicate_of, message.detail);
      };

      let thumbnailOf = null; // { id, image, size }: the stored file whose thumbnail is the next binary message
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") {
          const expected = thumbnailOf;
          thumbnailOf = null;
          if (expected && event.data.byteLength === expected.size) {
            post({ type: "thumbnail", id: expected.id, imageId: expected.image, url: dataUrl(event.data, expected.mime) });
          }
          return;
        }
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === "progress") {
          const item = receiving();
          if (item) {
            item.acked = Math.min(item.size, message.received);
            if (item.acked >= item.size) item.state = "checking";
            post({ type: "progress", id: item.id, acked: item.acked });
          }
          wake();
        } else if (message.type === "result") {
          const item = announced[message.file];
          if (item && message.image && Number.isInteger(message.thumbnail)) {
            const mime = THUMBNAIL_MIMES.includes(message.thumbnail_mime) ? message.thumbnail_mime : "image/jpeg";
            thumbnailOf = { id: item.id, image: message.image.id, size: message.thumbnail, mime };
          }
          verdict(message);
        } else if (message.type === "summary") {
          finished = true;
          for (const item of awaiting()) settle(item, 200, null, null, "");
        } else if (message.type === "error") {
          stopDetail = message.detail || "";
        }
      };
      ws.onclose = () => {
        closed = true;
        wake();
        resolve(finished ? null : stopDetail);
      };
      send().catch((error) => {
        stopDetail = String(error);
        ws.close();
      });
    });

  return async (message) => {
    if (message.type === "prepare") {
      prepare(message.url);
    } else if (message.type === "close") {
      const opening = spare;
      spare = null;
      if (opening) opening.then((ws) => ws.close(), () => {});
    } else if (message.type === "batch") {
      const feed = { id: message.batch, batch: [], more: true, limits: message.limits, added: null };
      feeding = feed; // set before any wait: the batch's next slices may come meanwhile
      handOver(feed, message);
      let ws;
      try {
        ws = await take(message.url);
      } catch (error) {
        if (feeding === feed) feeding = null;
        post({ type: "unavailable", detail: String(error.message || error) });
        return;
      }
      const stopped = await stream(ws, feed);
      if (feeding === feed) feeding = null;
      post({ type: "finished", stopped });
    } else if (message.type === "more" && feeding && feeding.id === message.batch) {
      handOver(feeding, message);
    }
  };
}

// The EXIF block of a JPEG whose first bytes `view` holds: where its TIFF header starts and where
// the APP1 segment ends (both offsets in the file), or null.
function exifBlock(view) {
  if (view.byteLength < 4 || view.getUint16(0) !== SOI) return null;
  let pos = 2;
  for (let segment = 0; segment < MAX_SEGMENTS && pos + 4 <= view.byteLength; segment++) {
    if (view.getUint8(pos) !== 0xff) return null;
    const marker = view.getUint8(pos + 1);
    if (marker === 0xff) {
      pos += 1; // a fill byte
      continue;
    }
    if (marker === SOS || marker === EOI) return null; // the metadata comes before the image
    const length = view.getUint16(pos + 2);
    if (length < 2) return null;
    const body = pos + 4;
    if (marker === APP1 && body + EXIF_HEADER.length <= view.byteLength &&
        EXIF_HEADER.every((byte, index) => view.getUint8(body + index) === byte)) {
      return { tiff: body + EXIF_HEADER.length, end: pos + 2 + length };
    }
    pos += 2 + length;
  }
  return null;
}

// The tags of the EXIF directory at `ifd` (relative to the TIFF header at `tiff`) that `wanted`
// names, as unsigned numbers, and the offset of the next directory (0: none); null when the
// directory does not lie within `end`.
function readDirectory(view, tiff, ifd, end, little, wanted) {
  const at = tiff + ifd;
  if (ifd < 8 || at + 2 > end) return null;
  const count = view.getUint16(at, little);
  if (count > MAX_IFD_ENTRIES || at + 2 + 12 * count + 4 > end) return null;
  const tags = {};
  for (let index = 0; index < count; index++) {
    const entry = at + 2 + 12 * index;
    const tag = view.getUint16(entry, little);
    if (wanted.includes(tag) && !(tag in tags)) {
      const short = view.getUint16(entry + 2, little) === SHORT;
      tags[tag] = short ? view.getUint16(entry + 8, little) : view.getUint32(entry + 8, little);
    }
  }
  return { tags, next: view.getUint32(at + 2 + 12 * count, little) };
}

// The embedded preview of a JPEG: the byte range of the thumbnail JPEG that IFD1 points to, and
// the orientation IFD0 gives the photo (1 to 8), or null when it has none or it is not well-formed.
export function embeddedThumbnail(view) {
  const block = exifBlock(view);
  if (!block) return null;
  const end = Math.min(block.end, view.byteLength);
  const { tiff } = block;
  if (tiff + 8 > end) return null;
  const order = view.getUint16(tiff);
  const little = order === TIFF_LITTLE_ENDIAN;
  if (!little && order !== TIFF_BIG_ENDIAN) return null;
  if (view.getUint16(tiff + 2, little) !== TIFF_MAGIC) return null;
  const ifd0 = readDirectory(view, tiff, view.getUint32(tiff + 4, little), end, little, [ORIENTATION]);
  if (!ifd0 || !ifd0.next) return null;
  const ifd1 = readDirectory(view, tiff, ifd0.next, end, little, [THUMBNAIL_OFFSET, THUMBNAIL_LENGTH]);
  if (!ifd1) return null;
  const offset = ifd1.tags[THUMBNAIL_OFFSET];
  const length = ifd1.tags[THUMBNAIL_LENGTH];
  if (!offset || !length || length < 4 || tiff + offset + length > end) return null;
  const start = tiff + offset;
  if (view.getUint16(start) !== SOI) return null;
  const orientation = ifd0.tags[ORIENTATION];
  return { start, end: start + length, orientation: orientation >= 1 && orientation <= 8 ? orientation : 1 };
}

// An EXIF block that says only `orientation`, so that the browser turns the thumbnail as it turns
// the photo (the thumbnail has no EXIF of its own, and its pixels are as the sensor saw them).
function orientationSegment(orientation) {
  const tiff = [TIFF_LITTLE_ENDIAN >> 8, TIFF_LITTLE_ENDIAN & 0xff, TIFF_MAGIC, 0, 8, 0, 0, 0]; // IFD0 right after it
  const ifd = [1, 0, ORIENTATION & 0xff, ORIENTATION >> 8, SHORT, 0, 1, 0, 0, 0, orientation, 0, 0, 0, 0, 0, 0, 0];
  const body = [...EXIF_HEADER, ...tiff, ...ifd];
  return new Uint8Array([0xff, APP1, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body]);
}

// The file's embedded preview as the bytes of a JPEG (from the EXIF_READ bytes already read), or null.
async function embeddedPreview(file) {
  const view = new DataView(await file.slice(0, EXIF_READ).arrayBuffer());
  const found = embeddedThumbnail(view);
  if (!found) return null;
  const thumbnail = new Uint8Array(view.buffer, found.start, found.end - found.start);
  if (found.orientation === 1) return thumbnail;
  // SOI, the orientation, then the thumbnail's own segments after its SOI.
  const segment = orientationSegment(found.orientation);
  const turned = new Uint8Array(2 + segment.length + thumbnail.length - 2);
  turned.set([0xff, SOI & 0xff]);
  turned.set(segment, 2);
  turned.set(thumbnail.subarray(2), 2 + segment.length);
  return turned;
}

// A small JPEG of `file` decoded by the browser near tile size (its bytes), or null. WebCodecs' ImageDecoder
// decodes a JPEG at 1/2, 1/4 or 1/8 scale when asked for a small size (in a secure context: https or
// localhost); elsewhere createImageBitmap decodes in full and scales. Both turn the picture upright
// as its EXIF orientation says.
async function decodedPreview(file) {
  if (typeof OffscreenCanvas === "undefined") return null;
  let picture = null;
  try {
    if (typeof ImageDecoder !== "undefined" && (await ImageDecoder.isTypeSupported(file.type))) {
      const decoder = new ImageDecoder({
        data: file.stream(),
        type: file.type,
        desiredWidth: PREVIEW_WIDTH,
        desiredHeight: PREVIEW_HEIGHT,
        preferAnimation: false,
      });
      try {
        picture = (await decoder.decode({ frameIndex: 0 })).image;
      } finally {
        decoder.close();
      }
    } else {
      picture = await createImageBitmap(file, { resizeWidth: PREVIEW_WIDTH, resizeQuality: "medium" });
    }
    const width = picture.displayWidth || picture.width;
    const height = picture.displayHeight || picture.height;
    const scale = Math.min(1, (2 * PREVIEW_WIDTH) / Math.max(width, height));
    const canvas = new OffscreenCanvas(Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale)));
    canvas.getContext("2d").drawImage(picture, 0, 0, canvas.width, canvas.height);
    return await (await canvas.convertToBlob({ type: "image/jpeg", quality: 0.85 })).arrayBuffer();
  } finally {
    if (picture) picture.close();
  }
}

// A picture of `file` for its tile: { url, source } with a data: URL (dataUrl: a Blob and its object
// URL would cost the page's main thread a synchronous round trip to the browser process each, to
// make and to revoke) and source "embedded" or "decoded", or { url: null } when it has none. The
// embedded thumbnail is looked for unless `lookEmbedded` is false (an earlier pass found none: its
// 128 KiB are not read again). Decoded only when `decode` (the page decides whether the server's
// thumbnail comes sooner); any failure only means no local preview.
export async function localPreview(file, decode, lookEmbedded = true) {
  try {
    const embedded = lookEmbedded ? await embeddedPreview(file) : null;
    if (embedded) return { url: dataUrl(embedded, "image/jpeg"), source: "embedded" };
    if (decode) {
      const decoded = await decodedPreview(file);
      if (decoded) return { url: dataUrl(decoded, "image/jpeg"), source: "decoded" };
    }
  } catch (error) {
    // an unreadable file or a picture the browser cannot decode: the server's thumbnail will do
  }
  return { url: null, source: "" };
}

// Run as a worker: "preview" messages get a local preview, every other message is for the socket.
if (typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope) {
  const uploader = socketUploader((message) => self.postMessage(message));
  self.onmessage = async (event) => {
    const message = event.data;
    if (message.type !== "preview") {
      uploader(message);
      return;
    }
    const { url, source } = await localPreview(message.file, message.decode, message.embedded);
    self.postMessage({ type: "preview", id: message.id, url, source });
  };
}
