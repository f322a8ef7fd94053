// Darkroom's drop zone. Files and folders (dropped or picked) and pasted images are shown at once
// with a local preview, then streamed over the page's upload WebSocket in binary chunks, never more
// than a window of bytes ahead of the server's acknowledgements. Each file gets the server's verdict
// as it lands; its local preview then gives way to the gallery card (or to the refusal). When the
// WebSocket cannot be opened, the same files go in one streaming HTTP request per batch.
//
// The socket and the local previews run in two module Web Workers of ui/upload_worker.js (attached
// with the element's `dependencies=`), so that reading, parsing and sending files never wait behind
// the page's rendering, nor the page behind them; where a worker cannot run, the page imports the
// same functions. The tiles are drawn at most PAINT_MS apart: an upload changes its files' progress
// hundreds of times a second, and re-rendering every tile for each change held the main thread.
// A local preview is the photo's embedded EXIF thumbnail when it has one (no decode; in the order
// dropped, so the first file shows at once); otherwise a decode near tile size, one at a time, the
// files that will wait longest for the server first, and only while the server's thumbnail is not
// expected sooner.
//
// What the page knows of formats, OS junk and byte sizes comes from Python as props (core.formats,
// core.archive, core.units); formatBytes below is the one remainder of core.units.format_bytes that
// must run here, on sizes only the browser knows, from the unit table Python gives it.

import { markRaw } from "vue";
import { onCardsShown, putThumbnail } from "thumbnails";
import { localPreview, overLimit, socketUploader } from "upload_worker";

const WALK_LIMIT = 5000; // files and folders visited in one folder drop or pick
const DEPTH_LIMIT = 32; // nested folders followed
const MAX_TILES = 120; // files shown at a time while uploading (the rest are counted)
const FIRST_TILES = 24; // tiles a drop of more files draws until its first local preview is on screen
const PAINT_MS = 100; // ms at least between two drawings of the tiles
const PREVIEW_TIMEOUT = 5000; // ms a local preview may take before the next one starts
const KEEP_FAILED = 10000; // ms a refusal stays on its tile (the page's message list keeps it too)
const KEEP_DONE = 3000; // ms at most a stored file waits for its gallery card
const FIRST_PREVIEW_MS = 250; // ms a big drop's upload waits at most for its first local preview
const SHOWN_KEPT = 2000; // ids of cards shown before their file's verdict came, kept for it
const HELD_NAMED = 5; // files held back for their size named in one notice (the rest are counted)
// Files handed to the upload worker in its first message, then twice as many per message, at most
// MAX_SLICE. Handing a picked File to a worker costs the page a synchronous round trip to the
// browser process for its size (0.2-0.3 ms on a busy core): 300 in one message held the main thread
// for 100 ms, the first local preview's drawing behind it. Slices of 20 came too slowly for the
// socket (a busy page runs a timer tens of ms late); doubling keeps the worker ahead of it.
const SLICE = 20;
const MAX_SLICE = 160;
const SMOOTHING = 0.2; // weight of the newest measurement in the upload rate and the decode time
const PENDING = ["queued", "uploading", "checking"]; // a file without its verdict yet
// The workers' script: the page's import map knows the library NiceGUI serves (null: too old a browser).
const WORKER_URL = typeof import.meta.resolve === "function" ? import.meta.resolve("upload_worker") : null;
// Python's rounding (half to even), so that a size reads here as in the server's messages.
const NUMBER = [0, 1].map(
  (digits) =>
    new Intl.NumberFormat("en-US", { maximumFractionDigits: digits, useGrouping: false, roundingMode: "halfEven" }),
);

class SocketUnavailable extends Error {}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const pad = (n) => String(n).padStart(2, "0");

// One tile of a file on its way. The tile's values come as props, so a drawing of the drop zone
// draws again only the tiles whose state, progress, caption or preview changed, not all 120.
// Icons are Quasar's markup without a QIcon component per tile.
const TILE_ICONS = { queued: "schedule", uploading: "upload", checking: "hourglass_top", done: "check_circle",
                     skipped: "block", failed: "error" };
const DrTile = {
  props: { item: Object, state: String, preview: String, source: String, percent: Number, caption: String },
  emits: ["clear"],
  template: `
    <div class="dr-pending-tile" :class="'dr-' + state" :data-state="state" :data-name="item.name">
      <img v-if="preview" :src="preview" class="dr-local-preview" :alt="item.name" :data-preview="source"
           decoding="async" @error="$emit('clear')" />
      <div v-else class="dr-pending-noview">
        <i class="q-icon notranslate material-icons dr-tile-kind" aria-hidden="true">{{ item.archive ? "folder_zip" : "image" }}</i>
      </div>
      <div v-if="state === 'queued' || state === 'uploading'" class="dr-pending-bar">
        <div :style="{ width: percent + '%' }"></div>
      </div>
      <div class="dr-pending-caption" :title="item.name + ' · ' + caption">
        <i class="q-icon notranslate material-icons dr-tile-state" aria-hidden="true">{{ icons[state] }}</i>
        {{ item.name }} · {{ caption }}
      </div>
    </div>`,
  data: () => ({ icons: TILE_ICONS }),
};

export default {
  components: { DrTile },
  template: `
    <div class="dr-dropzone" :class="{ 'dr-dragging': dragging }" role="button" tabindex="0"
         @dragenter.prevent="dragging = true" @dragover.prevent="dragging = true"
         @dragleave.prevent="dragging = false" @drop.prevent="onDrop"
         @click="$refs.input.click()" @keydown.enter="$refs.input.click()">
      <input ref="input" type="file" multiple :accept="accept" class="dr-file-input" @change="onPick" @click.stop />
      <input ref="folder" type="file" multiple webkitdirectory class="dr-file-input dr-folder-input"
             @change="onPick" @click.stop />
      <div class="dr-dropzone-label">
        <q-icon name="cloud_upload" size="sm" />
        <span>{{ label }}</span>
        <q-btn flat dense no-caps size="sm" icon="folder_open" label="Pick a folder"
               class="dr-pick-folder" @click.stop="$refs.folder.click()" />
      </div>
      <div class="dr-dropzone-hint">Ctrl+V / ⌘V pastes images from the clipboard</div>
      <div v-if="shown.length" class="dr-grid dr-pending" @click.stop>
        <dr-tile v-for="item in shown" :key="item.key" :item="item" :state="item.state" :preview="item.preview"
                 :source="item.previewSource" :percent="Math.round(item.progress * 100)" :caption="caption(item)"
                 @clear="clearPreview(item)" />
        <div v-if="hidden" class="dr-pending-more">and {{ hidden }} more files</div>
      </div>
    </div>`,
  props: {
    url: String,
    wsUrl: String,
    label: String,
    accept: String,
    maxImageBytes: Number,
    maxArchiveBytes: Number,
    maxFiles: Number,
    junkNames: Array, // core.archive: lowercase file names, folder names, name prefixes
    junkFolders: Array,
    junkPrefixes: Array,
    previewable: Array, // core.formats: File.type of the formats the browser decodes itself
    archiveMimes: Array,
    archiveExtensions: Array,
    extensionsByMime: Object, // a pasted image's extension by its type
    byteUnits: Array, // core.units: the unit table of format_bytes
    byteStep: Number,
  },
  data() {
    return {
      dragging: false,
      frame: 0, // bumped to draw the tiles again: they are not reactive
    };
  },
  computed: {
    shown() {
      return this.frame >= 0 ? this.items.slice(0, this.tileLimit) : [];
    },
    hidden() {
      return this.frame >= 0 ? Math.max(0, this.items.length - this.tileLimit) : 0;
    },
  },
  created() {
    this.items = []; // plain objects (markRaw): a change is drawn by paint(), not by Vue's tracking
    this.tileLimit = MAX_TILES; // tiles drawn (FIRST_TILES at the start of a big drop)
    this.painting = null;
    this.paintedAt = 0;
  },
  mounted() {
    this.queue = [];
    this.busy = false;
    this.socketBroken = false;
    this.previewQueue = []; // tiles waiting for their embedded thumbnail, in the order dropped
    this.decodeQueue = []; // tiles without one, waiting for a decode, newest last
    this.previewShown = []; // who waits for the next local preview on screen
    this.previewing = false;
    this.previewWaiters = new Map(); // tile key -> the resolve of its preview asked from the worker
    this.rate = 0; // bytes acknowledged per ms, smoothed (0: not measured yet)
    this.reportedAt = 0; // performance.now() of the batch's last progress report (0: none yet)
    this.decodeMs = 0; // ms a local decode takes, smoothed (0: none measured yet)
    this.sending = null; // the batch on the socket: { batch, resolve, reject, byId, id }
    this.batches = 0; // batches handed to the upload worker (their ids)
    this.startUploader();
    this.startPreviewer();
    this.onPaste = (event) => this.paste(event);
    document.addEventListener("paste", this.onPaste);
    this.awaitingCard = new Map(); // image id -> its tile, stored and waiting for its gallery card
    this.heldBack = []; // files not sent for their size, not yet told: { name, size }, at most HELD_NAMED
    this.heldCount = 0; // how many, named or not
    this.heldTimer = null;
    this.shownEarly = new Set(); // image ids whose card the gallery showed before their verdict
    this.stopListening = onCardsShown((imageIds) => this.cardsShown(imageIds));
    this.prepareSocket();
  },
  beforeUnmount() {
    this.unmounted = true;
    this.stopListening();
    document.removeEventListener("paste", this.onPaste);
    clearTimeout(this.painting);
    clearTimeout(this.heldTimer);
    this.previewQueue = [];
    this.decodeQueue = [];
    if (this.worker) this.worker.terminate();
    else this.toUploader({ type: "close" });
    if (this.previewer) this.previewer.terminate();
    for (const item of this.items) this.release(item);
  },
  methods: {
    // -- what to send --
    onPick(event) {
      const picked = [...event.target.files].slice(0, WALK_LIMIT);
      const fromFolder = event.target === this.$refs.folder;
      this.add(picked.map((file) => ({ file, name: file.webkitRelativePath || file.name, fromFolder })));
      if (event.target.files.length > WALK_LIMIT) this.notice(`Only the first ${WALK_LIMIT} files were taken.`);
      event.target.value = "";
    },
    async onDrop(event) {
      this.dragging = false;
      // Entries must be taken now: the DataTransfer is emptied when this handler returns.
      const entries = [...(event.dataTransfer.items || [])]
        .map((item) => (item.kind === "file" && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
        .filter(Boolean);
      if (!entries.some((entry) => entry.isDirectory)) {
        this.add([...event.dataTransfer.files].map((file) => ({ file, name: file.name, fromFolder: false })));
        return;
      }
      const found = [];
      const budget = { left: WALK_LIMIT };
      for (const entry of entries) await this.walk(entry, 0, found, budget);
      if (budget.left <= 0) this.notice(`Only the first ${WALK_LIMIT} files and folders were taken.`);
      this.add(found);
    },
    async walk(entry, depth, found, budget) {
      if (budget.left-- <= 0 || depth > DEPTH_LIMIT) return;
      const name = entry.fullPath.replace(/^\/+/, "");
      if (this.isJunk(name)) return;
      if (entry.isFile) {
        try {
          const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
          found.push({ file, name, fromFolder: depth > 0 || entry.isDirectory });
        } catch (error) {
          this.notice(`${name}: the browser could not read this file.`);
        }
        return;
      }
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve) => reader.readEntries(resolve, () => resolve([])));
        if (!batch.length) return;
        for (const child of batch) {
          await this.walk(child, depth + 1, found, budget);
          if (budget.left <= 0) return;
        }
      }
    },
    paste(event) {
      const files = [...(event.clipboardData?.files || [])].filter((file) => file.type.startsWith("image/"));
      if (!files.length) return; // text pastes stay with the field that has the focus
      event.preventDefault();
      const now = new Date();
      const stamp =
        `pasted-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}` +
        `-${pad(now.getHours())}-${pad(now.getMinutes())}-${pad(now.getSeconds())}`;
      const named = files.map((file, index) => {
        // Screenshots come as "image.png"; a file copied in a file manager keeps its name.
        if (file.name && !/^image\.\w+$/i.test(file.name)) return { file, name: file.name, fromFolder: false };
        const subtype = (file.type.split("/")[1] || "png").replace(/\+.*$/, ""); // a type no format has
        const ext = this.extensionsByMime[file.type] || `.${subtype}`;
        const suffix = files.length > 1 ? `-${index + 1}` : "";
        return { file, name: `${stamp}${suffix}${ext}`, fromFolder: false };
      });
      this.add(named);
    },
    isJunk(path) {
      // core.archive.is_os_junk, on the lists it reads
      const parts = path.split("/").filter(Boolean);
      if (!parts.length || parts.some((part) => this.junkFolders.includes(part))) return true;
      const base = parts[parts.length - 1].toLowerCase();
      return this.junkNames.includes(base) || this.junkPrefixes.some((prefix) => base.startsWith(prefix));
    },
    isArchive(file, name) {
      const lower = name.toLowerCase();
      return this.archiveMimes.includes(file.type) || this.archiveExtensions.some((ext) => lower.endsWith(ext));
    },
    add(entries) {
      entries = entries.filter((entry) => !this.isJunk(entry.name));
      // A file's size is not read here: the first read of a picked File's size is a synchronous
      // round trip to the browser process (45 ms for 300 files, all in this one task). The upload
      // worker reads a batch's sizes at its start and names the files over their limit ("sizes").
      for (const entry of entries) {
        const item = markRaw({
          key: `${Date.now()}-${Math.random()}`,
          file: entry.file,
          name: entry.name,
          size: null, // known once the upload worker has the file's batch
          archive: this.isArchive(entry.file, entry.name),
          fromFolder: entry.fromFolder,
          preview: "", // the local preview, a data: URL
          previewSource: "", // "embedded" (the EXIF thumbnail) or "decoded"
          progress: 0,
          state: "queued",
          detail: "",
          stored: 0,
        });
        this.items.push(item);
        this.queue.push(item);
        if (this.items.length <= MAX_TILES) this.askPreview(item);
      }
      // In a drop of more files than there are tiles, the first local preview goes before the
      // upload: reading and sending hundreds of files would take the browser's core from it (a
      // pinned core: 0.3-0.6 s to the first picture). At most FIRST_PREVIEW_MS; a smaller drop's
      // previews come within its first tens of ms anyway, and its upload does not wait. Until then
      // such a drop draws FIRST_TILES tiles, not all of them: drawing 120 at once held that first
      // preview, and so the upload, for tens of ms on a pinned core.
      const big = entries.length > MAX_TILES && this.previewQueue.length;
      if (big) this.tileLimit = FIRST_TILES;
      this.paint();
      const first = big ? Promise.race([this.nextPreview(), delay(FIRST_PREVIEW_MS)]) : null;
      this.preview();
      if (first) {
        first.then(() => {
          this.pump();
          setTimeout(() => {
            this.tileLimit = MAX_TILES; // the others once that preview has been drawn
            this.paint();
          }, PAINT_MS);
        });
      } else {
        this.pump();
      }
    },
    nextPreview() {
      return new Promise((resolve) => this.previewShown.push(resolve));
    },
    notice(text) {
      this.$emit("notice", text);
    },
    paint(now = false) {
      // Draw the tiles' changes once, however many happened since the last drawing; `now` for a
      // change worth a drawing of its own (a local preview: at most one per file).
      if (now) {
        clearTimeout(this.painting);
        this.painting = null;
      }
      if (this.painting !== null) return;
      const wait = now ? 0 : Math.max(0, this.paintedAt + PAINT_MS - performance.now());
      this.painting = setTimeout(() => {
        this.painting = null;
        this.paintedAt = performance.now();
        this.frame++;
      }, wait);
    },
    async preview() {
      // One at a time. First every tile's embedded thumbnail, in the order dropped: it costs no
      // decode, and the first file shows at once. Then a decode for the tiles without one, newest
      // first: the first files land on the server soonest and show its thumbnail, so their own
      // decode would be wasted work taken from the upload.
      if (this.previewing) return;
      this.previewing = true;
      try {
        while (this.previewQueue.length || this.decodeQueue.length) {
          const embedded = this.previewQueue.length > 0;
          const item = embedded ? this.previewQueue.shift() : this.decodeQueue.pop();
          if (item.preview || !item.file || !PENDING.includes(item.state)) continue;
          const decode = !embedded && !this.serverSooner(item);
          if (!embedded && !decode) continue;
          const started = performance.now();
          let timer;
          const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(null), PREVIEW_TIMEOUT)));
          const found = await Promise.race([this.previewOf(item, decode, embedded), timeout]);
          clearTimeout(timer);
          this.previewWaiters.delete(item.key); // a preview that hangs stops no other
          if (embedded && !(found && found.url)) {
            this.decodeQueue.push(item); // no embedded thumbnail: maybe a decode, later
            continue;
          }
          if (!found || !found.url) continue;
          if (found.source === "decoded") this.decodeMs = this.smoothed(this.decodeMs, performance.now() - started);
          if (this.unmounted || item.preview || !this.items.includes(item)) continue; // the tile is gone
          item.preview = found.url;
          item.previewSource = found.source;
          this.paint(true);
          for (const resolve of this.previewShown.splice(0)) resolve();
        }
      } finally {
        this.previewing = false;
      }
    },
    previewOf(item, decode, embedded) {
      // `embedded`: this is the first pass, which looks for the EXIF thumbnail; the decode pass
      // comes only for files without one, so it does not look again.
      if (!this.previewer) return localPreview(item.file, decode, embedded);
      return new Promise((resolve) => {
        this.previewWaiters.set(item.key, resolve);
        this.previewer.postMessage({ type: "preview", id: item.key, file: item.file, decode, embedded });
      });
    },
    serverSooner(item) {
      // Whether the server's thumbnail of `item` should come before a local decode would finish:
      // its bytes are all sent, or the bytes before its end go out faster than a decode takes
      // (both measured on this page; unmeasured, the page decodes).
      if (item.state === "checking") return true;
      if (!this.rate || !this.decodeMs) return false;
      // A size not read yet (a batch after the one on the socket) counts as the mean of those
      // read; with none read, the page cannot tell, so it decodes.
      let known = 0;
      let knownBytes = 0;
      for (const other of this.items) {
        if (other.size !== null) [known, knownBytes] = [known + 1, knownBytes + other.size];
      }
      if (!known) return false;
      let ahead = 0;
      for (const other of this.items) {
        if (other.state === "queued" || other.state === "uploading") {
          ahead += (other.size === null ? knownBytes / known : other.size) * (1 - other.progress);
        }
        if (other === item) break;
      }
      return ahead / this.rate < this.decodeMs;
    },
    measure(item, progress) {
      // A file's progress, and the upload rate from the bytes it reports since the last report of
      // any file in this batch.
      const bytes = (progress - item.progress) * item.size;
      item.progress = progress;
      if (bytes <= 0) return;
      const now = performance.now();
      if (this.reportedAt && now > this.reportedAt) this.rate = this.smoothed(this.rate, bytes / (now - this.reportedAt));
      this.reportedAt = now;
    },
    smoothed(previous, value) {
      return previous ? previous + SMOOTHING * (value - previous) : value;
    },
    formatBytes(n) {
      // core.units.format_bytes: whole bytes, then at most one decimal in the unit table's units.
      let value = n;
      for (const [index, unit] of this.byteUnits.entries()) {
        if (Math.abs(value) < this.byteStep || index === this.byteUnits.length - 1) {
          return `${NUMBER[index ? 1 : 0].format(value)} ${unit}`;
        }
        value /= this.byteStep;
      }
      return "";
    },
    caption(item) {
      if (item.detail) return item.detail;
      if (item.state === "queued") return "waiting";
      if (item.state === "checking") return "checking";
      if (item.state === "done") return item.archive ? `${item.stored} stored` : "stored";
      return `${Math.round(item.progress * 100)}% of ${this.formatBytes(item.size)}`;
    },
    // -- sending --
    async pump() {
      if (this.busy) return;
      this.busy = true;
      try {
        while (this.queue.length) {
          const batch = this.queue.splice(0, Math.max(1, this.maxFiles || 1)); // the per-request limit
          if (!this.socketBroken) {
            try {
              await this.overSocket(batch);
              continue;
            } catch (error) {
              if (!(error instanceof SocketUnavailable)) throw error;
              this.socketBroken = true; // a proxy or firewall without WebSockets: HTTP from now on
            }
          }
          await this.overHttp(batch);
        }
      } finally {
        this.busy = false;
      }
    },
    socketUrl() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return `${scheme}//${location.host}${window.path_prefix || ""}${this.wsUrl}`;
    },
    spawnWorker(receive, failed) {
      // A module worker of ui/upload_worker.js, or null where none can be started. One that fails
      // later (it did not load: a Content-Security-Policy without it, a browser without module
      // workers; or it broke) is terminated and `failed` runs.
      if (!WORKER_URL || typeof Worker === "undefined") return null;
      try {
        const worker = new Worker(WORKER_URL, { type: "module" });
        worker.onmessage = (event) => receive(event.data);
        worker.onerror = () => {
          worker.terminate();
          failed();
        };
        return worker;
      } catch (error) {
        return null;
      }
    },
    startUploader() {
      // Where the worker cannot run, the socket runs on the page. The files of a batch not yet
      // settled when the worker failed are sent again.
      const receive = (message) => this.fromUploader(message);
      const onPage = () => {
        this.worker = null;
        const uploader = socketUploader(receive);
        this.toUploader = (message) => uploader(message);
      };
      this.worker = this.spawnWorker(receive, () => {
        onPage();
        const sending = this.sending;
        if (sending) {
          sending.id = ++this.batches; // the slices still being handed over stop: all go again here
          this.toUploader(this.batchMessage(sending, sending.batch.filter((item) => PENDING.includes(item.state))));
        } else {
          this.prepareSocket();
        }
      });
      if (this.worker) this.toUploader = (message) => this.worker.postMessage(message);
      else onPage();
    },
    startPreviewer() {
      // Previews are made on the page where the worker cannot run; the ones it was making end with it.
      const receive = (message) => {
        const resolve = this.previewWaiters.get(message.id);
        if (resolve) resolve(message);
      };
      this.previewer = this.spawnWorker(receive, () => {
        this.previewer = null;
        for (const resolve of this.previewWaiters.values()) resolve(null);
      });
    },
    prepareSocket() {
      // The next drop's socket is opened ahead: its handshake is paid before files are chosen.
      if (this.socketBroken || !this.wsUrl) return;
      this.toUploader({ type: "prepare", url: this.socketUrl() });
    },
    overSocket(batch) {
      this.reportedAt = 0; // the time between two batches is no upload time
      return new Promise((resolve, reject) => {
        const sending = { batch, resolve, reject, byId: new Map(batch.map((item) => [item.key, item])) };
        sending.id = ++this.batches;
        this.sending = sending;
        this.toUploader(this.batchMessage(sending, batch.slice(0, SLICE), batch.length > SLICE));
        this.handOver(sending, sending.id, SLICE, 2 * SLICE);
      }).then(
        () => {
          this.sending = null;
          this.prepareSocket(); // the next drop's socket
        },
        (error) => {
          this.sending = null;
          throw error; // no socket: the caller falls back to HTTP
        },
      );
    },
    batchMessage(sending, items, more = false) {
      return { type: "batch", batch: sending.id, url: this.socketUrl(), files: this.entries(items), more,
               limits: this.limits() };
    },
    handOver(sending, id, start, size) {
      // The rest of a batch's Files, a slice per task (`size` files, then twice as many), so that no
      // task of the page's holds them all.
      if (start >= sending.batch.length) return;
      setTimeout(() => {
        if (this.unmounted || this.sending !== sending || sending.id !== id) return; // over, or sent again
        const end = start + size;
        const more = end < sending.batch.length;
        this.toUploader({ type: "more", batch: id, files: this.entries(sending.batch.slice(start, end)), more });
        this.handOver(sending, id, end, Math.min(MAX_SLICE, 2 * size));
      }, 0);
    },
    entries(items) {
      return items.map((item) => ({ id: item.key, file: item.file, name: item.name, archive: item.archive }));
    },
    limits() {
      return { image: this.maxImageBytes, archive: this.maxArchiveBytes };
    },
    fromUploader(message) {
      const sending = this.sending;
      if (!sending) return;
      const item = sending.byId.get(message.id);
      if (message.type === "unavailable") {
        sending.reject(new SocketUnavailable(message.detail));
      } else if (message.type === "finished") {
        if (message.stopped !== null) {
          const detail = message.stopped || "the connection to the server was lost";
          for (const left of sending.batch) {
            if (PENDING.includes(left.state)) this.settle(left, 0, null, null, detail);
          }
          this.$emit("stopped", detail);
        }
        sending.resolve();
      } else if (message.type === "sizes" && Array.isArray(message.sizes)) {
        for (const [id, size, held] of message.sizes) {
          const sized = sending.byId.get(id);
          if (!sized || !PENDING.includes(sized.state)) continue;
          sized.size = size;
          if (held) this.holdBack(sized);
        }
        this.paint();
      } else if (!item) {
        return;
      } else if (message.type === "uploading") {
        item.state = "uploading";
        this.paint();
      } else if (message.type === "progress") {
        this.measure(item, item.size ? message.acked / item.size : 1);
        if (message.acked >= item.size) item.state = "checking";
        this.paint();
      } else if (message.type === "member") {
        item.stored++; // a member of an archive was stored
        this.paint();
      } else if (message.type === "verdict") {
        this.settle(item, message.status, message.image, message.duplicateOf, message.detail);
      } else if (message.type === "thumbnail" && typeof message.url === "string" && message.url.startsWith("data:image/")) {
        putThumbnail(message.imageId, message.url); // the gallery draws the card from it
      }
    },
    overHttp(batch) {
      this.reportedAt = 0;
      for (const item of batch) {
        item.size = item.file.size;
        if (overLimit(item.size, item.archive, this.limits())) this.holdBack(item);
      }
      batch = batch.filter((item) => item.state !== "held");
      if (!batch.length) return Promise.resolve();
      return new Promise((resolve) => {
        const form = new FormData();
        for (const item of batch) {
          item.state = "uploading";
          this.paint();
          form.append("files", item.file, item.name);
        }
        const xhr = new XMLHttpRequest();
        xhr.open("POST", (this.url.startsWith("/") ? window.path_prefix || "" : "") + this.url);
        xhr.upload.onprogress = (event) => {
          let rest = event.loaded;
          for (const item of batch) {
            const got = Math.max(0, Math.min(item.size, rest));
            rest -= item.size;
            this.measure(item, item.size ? got / item.size : 1);
            if (item.progress >= 1 && item.state === "uploading") item.state = "checking";
          }
          this.paint();
        };
        xhr.onload = () => {
          let body = {};
          try {
            body = JSON.parse(xhr.responseText);
          } catch (error) {
            body = { detail: `the server answered ${xhr.status}` };
          }
          // The server names each part as it keeps it ("parts", in the order sent): outcomes are
          // found by those names, never by cleaning the names here.
          const parts = Array.isArray(body.parts) ? body.parts : [];
          const refused = new Map((body.rejected || []).map((r) => [r.filename, r]));
          const stored = new Map((body.accepted || []).map((r) => [r.filename, r]));
          const copies = new Map((body.duplicates || []).map((d) => [d.filename, d]));
          for (const [index, item] of batch.entries()) {
            const name = typeof parts[index] === "string" ? parts[index] : null;
            if (refused.has(name)) this.settle(item, refused.get(name).status, null, null, refused.get(name).detail);
            else if (stored.has(name)) this.settle(item, 200, stored.get(name), null, "");
            else if (copies.has(name)) this.settle(item, 200, null, copies.get(name).existing, "");
            else if (xhr.status >= 400) this.settle(item, xhr.status, null, null, body.detail || `the server answered ${xhr.status}`);
            else this.settle(item, 200, null, null, "");
          }
          resolve();
        };
        xhr.onerror = () => {
          for (const item of batch) this.settle(item, 0, null, null, "the connection to the server was lost");
          resolve();
        };
        xhr.send(form);
      });
    },
    // -- verdicts --
    holdBack(item) {
      // A file over its limit is not sent: its tile goes, and Python says so for all the files held
      // back within PAINT_MS at once (the first HELD_NAMED by name and size, the rest counted).
      item.state = "held";
      if (this.heldBack.length < HELD_NAMED) this.heldBack.push({ name: item.name, size: item.size });
      this.heldCount++;
      this.remove(item);
      if (this.heldTimer) return;
      this.heldTimer = setTimeout(() => {
        this.heldTimer = null;
        this.$emit("rejected", { files: this.heldBack.splice(0), count: this.heldCount });
        this.heldCount = 0;
      }, PAINT_MS);
    },
    settle(item, status, image, duplicateOf, detail) {
      item.progress = 1;
      this.paint();
      if (status === 200 || status === 201) {
        item.state = "done";
        if (image) item.stored++;
        item.detail = !image && duplicateOf ? `already in the workspace as ${duplicateOf.filename}` : "";
        this.giveWay(item, image ? image.id : null);
      } else if (status === 415 && item.fromFolder) {
        item.state = "skipped"; // as in ZIP archives: what is not an image in a folder is skipped
        item.detail = `skipped (${detail})`;
        this.later(item, KEEP_DONE);
      } else {
        item.state = "failed";
        item.detail = detail || "refused";
        this.later(item, KEEP_FAILED);
      }
    },
    giveWay(item, imageId) {
      // The local preview stays until the gallery shows the server's verified thumbnail (cardsShown,
      // through ui/thumbnails.js), or KEEP_DONE at most.
      if (!imageId || this.shownEarly.delete(imageId)) {
        this.remove(item);
        return;
      }
      this.awaitingCard.set(imageId, item);
      setTimeout(() => {
        if (this.awaitingCard.get(imageId) === item) this.awaitingCard.delete(imageId);
        this.remove(item);
      }, KEEP_DONE);
    },
    cardsShown(imageIds) {
      // From the gallery: the thumbnails of these images have loaded.
      for (const imageId of imageIds) {
        const item = this.awaitingCard.get(imageId);
        if (item) {
          this.awaitingCard.delete(imageId);
          this.remove(item);
        } else {
          this.shownEarly.add(imageId);
          if (this.shownEarly.size > SHOWN_KEPT) this.shownEarly.delete(this.shownEarly.values().next().value);
        }
      }
    },
    later(item, ms) {
      setTimeout(() => this.remove(item), ms);
    },
    clearPreview(item) {
      item.preview = "";
      this.paint();
    },
    release(item) {
      this.clearPreview(item);
      item.file = null; // the bytes are on the server now: let the browser free them
    },
    remove(item) {
      if (!this.items.includes(item)) return;
      this.release(item);
      this.items = this.items.filter((other) => other !== item);
      const uncovered = this.items[MAX_TILES - 1]; // a file that was counted now has a tile
      if (uncovered && this.askPreview(uncovered)) this.preview();
      this.paint();
    },
    askPreview(item) {
      // Queue a tile for its local preview once; true when it was queued.
      if (item.previewAsked || item.archive || !item.file || !this.previewable.includes(item.file.type)) return false;
      item.previewAsked = true;
      this.previewQueue.push(item);
      return true;
    },
  },
};
