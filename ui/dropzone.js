// Darkroom's drop zone. Files and folders (dropped or picked) and pasted images are shown at once
// with the browser's own preview, then streamed over the page's upload WebSocket in binary chunks,
// never more than WINDOW bytes ahead of the server's acknowledgements. Each file gets the server's
// verdict as it lands; its local preview then gives way to the gallery card (or to the refusal).
// When the WebSocket cannot be opened, the same files go in one streaming HTTP request per batch.

const CHUNK = 256 * 1024; // bytes per binary message (uvicorn's wsproto reassembles 1 MiB messages slowly)
const READ = 4 * 1024 * 1024; // bytes read from the file at once (sending small Blob slices is slow in Chromium)
const WINDOW = 8 * 1024 * 1024; // bytes sent but not yet acknowledged, and bytes buffered by the browser
const OPEN_TIMEOUT = 5000; // ms to wait for the server's "ready" before falling back to HTTP
const WALK_LIMIT = 5000; // files and folders visited in one folder drop or pick
const DEPTH_LIMIT = 32; // nested folders followed
const MAX_PREVIEWS = 60; // local previews decoded at a time (more files show an icon)
const MAX_TILES = 120; // files shown at a time while uploading (the rest are counted)
const KEEP_FAILED = 10000; // ms a refusal stays on its tile (the page's message list keeps it too)
const KEEP_DONE = 3000; // ms at most a stored file waits for its gallery card
const PREVIEWABLE = /^image\/(jpeg|png|gif|webp|avif|bmp|x-ms-bmp|svg\+xml)$/;

class SocketUnavailable extends Error {}

const pad = (n) => String(n).padStart(2, "0");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The name the server reports for a file (core.ingest.clean_filename): control and format
// characters dropped, white space folded, cut to 200 characters keeping the extension.
const MAX_NAME = 200;
const fold = (raw) => {
  const kept = [...raw]
    .map((ch) => (/[\t\n\r]/.test(ch) ? " " : ch))
    .filter((ch) => !/[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}]/u.test(ch) || ch === " ");
  const text = kept.join("").split(/\s+/).filter(Boolean).join(" ");
  const chars = [...text];
  if (chars.length <= MAX_NAME) return text || "image";
  const dot = text.lastIndexOf(".");
  const ext = dot >= 0 ? [...text.slice(dot + 1)] : [];
  if (dot >= 0 && ext.length > 0 && ext.length <= 10) {
    return [...text.slice(0, dot)].slice(0, MAX_NAME - ext.length - 2).join("") + "…." + ext.join("");
  }
  return chars.slice(0, MAX_NAME - 1).join("") + "…";
};

export default {
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
      <div v-if="items.length" class="dr-grid dr-pending" @click.stop>
        <div v-for="item in items.slice(0, maxTiles)" :key="item.key" class="dr-pending-tile" :class="'dr-' + item.state"
             :data-state="item.state" :data-name="item.name">
          <img v-if="item.preview" :src="item.preview" class="dr-local-preview" :alt="item.name"
               decoding="async" @error="revokePreview(item)" />
          <div v-else class="dr-pending-noview"><q-icon :name="item.archive ? 'folder_zip' : 'image'" size="md" /></div>
          <q-linear-progress v-if="item.state === 'queued' || item.state === 'uploading'" :value="item.progress"
                             instant-feedback />
          <div class="dr-pending-caption" :title="item.name + ' · ' + caption(item)">
            <q-icon :name="icons[item.state]" size="xs" /> {{ item.name }} · {{ caption(item) }}
          </div>
        </div>
        <div v-if="items.length > maxTiles" class="dr-pending-more">and {{ items.length - maxTiles }} more files</div>
      </div>
    </div>`,
  props: {
    url: String,
    wsUrl: String,
    thumbnailUrl: String,
    label: String,
    accept: String,
    maxImageBytes: Number,
    maxArchiveBytes: Number,
    maxFiles: Number,
    junkNames: Array,
  },
  data() {
    return {
      dragging: false,
      items: [],
      maxTiles: MAX_TILES,
      icons: { queued: "schedule", uploading: "upload", checking: "hourglass_top", done: "check_circle",
               skipped: "block", failed: "error" },
    };
  },
  mounted() {
    this.queue = [];
    this.busy = false;
    this.socketBroken = false;
    this.previews = 0;
    this.spare = null;
    this.onPaste = (event) => this.paste(event);
    document.addEventListener("paste", this.onPaste);
    this.prepareSocket();
  },
  beforeUnmount() {
    document.removeEventListener("paste", this.onPaste);
    const spare = this.spare;
    this.spare = null;
    if (spare) spare.then((ws) => ws.close(), () => {});
    for (const item of this.items) this.revoke(item);
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
        const ext = (file.type.split("/")[1] || "png").replace("jpeg", "jpg").replace(/\+.*$/, "");
        const suffix = files.length > 1 ? `-${index + 1}` : "";
        return { file, name: `${stamp}${suffix}.${ext}`, fromFolder: false };
      });
      this.add(named);
    },
    isJunk(path) {
      const parts = path.split("/").filter(Boolean);
      if (!parts.length || parts.includes("__MACOSX")) return true;
      const base = parts[parts.length - 1].toLowerCase();
      return (this.junkNames || []).includes(base) || base.startsWith("._");
    },
    isArchive(file, name) {
      return /\.zip$/i.test(name) || /zip/.test(file.type);
    },
    add(entries) {
      entries = entries.filter((entry) => !this.isJunk(entry.name));
      const fits = (e) => e.file.size <= (this.isArchive(e.file, e.name) ? this.maxArchiveBytes : this.maxImageBytes);
      const rejected = entries.filter((e) => !fits(e));
      if (rejected.length) this.$emit("rejected", rejected.map((e) => ({ name: e.name, size: e.file.size })));
      for (const entry of entries.filter(fits)) {
        const archive = this.isArchive(entry.file, entry.name);
        let preview = "";
        if (!archive && PREVIEWABLE.test(entry.file.type) && this.previews < MAX_PREVIEWS) {
          preview = URL.createObjectURL(entry.file); // the browser decodes it: shown before any byte is sent
          this.previews++;
        }
        this.items.push({
          key: `${Date.now()}-${Math.random()}`,
          file: entry.file,
          name: entry.name,
          size: entry.file.size,
          archive,
          fromFolder: entry.fromFolder,
          preview,
          progress: 0,
          sent: 0,
          acked: 0,
          state: "queued",
          detail: "",
          stored: 0,
        });
        this.queue.push(this.items[this.items.length - 1]); // the reactive copy
      }
      this.pump();
    },
    notice(text) {
      this.$emit("notice", text);
    },
    caption(item) {
      if (item.detail) return item.detail;
      if (item.state === "queued") return "waiting";
      if (item.state === "checking") return "checking";
      if (item.state === "done") return item.archive ? `${item.stored} stored` : "stored";
      const size = item.size < 1048576 ? `${Math.ceil(item.size / 1024)} KiB` : `${(item.size / 1048576).toFixed(1)} MiB`;
      return `${Math.round(item.progress * 100)}% of ${size}`;
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
    connect() {
      // A socket of the page's upload route, resolved once the server has said "ready".
      return new Promise((resolve, reject) => {
        let ws;
        try {
          ws = new WebSocket(this.socketUrl());
        } catch (error) {
          reject(new SocketUnavailable(String(error)));
          return;
        }
        ws.binaryType = "arraybuffer";
        const timer = setTimeout(() => {
          ws.onmessage = ws.onclose = null;
          ws.close();
          reject(new SocketUnavailable("no answer"));
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
          reject(new SocketUnavailable("closed before ready"));
        };
      });
    },
    prepareSocket() {
      // The next drop's socket is opened ahead: its handshake is paid before files are chosen.
      if (this.socketBroken || this.spare || !this.wsUrl) return;
      const spare = this.connect();
      this.spare = spare;
      spare.then(
        (ws) => {
          ws.onclose = () => {
            if (this.spare === spare) this.spare = null; // closed while idle (a restart, a proxy)
          };
        },
        () => {
          if (this.spare === spare) this.spare = null;
        },
      );
    },
    async takeSocket() {
      const spare = this.spare;
      this.spare = null;
      if (spare) {
        try {
          const ws = await spare;
          if (ws.readyState === WebSocket.OPEN) return ws;
        } catch (error) {
          // the spare failed: one fresh attempt decides
        }
      }
      return this.connect();
    },
    async overSocket(batch) {
      const ws = await this.takeSocket(); // SocketUnavailable: the caller falls back to HTTP
      try {
        await this.stream(ws, batch);
      } finally {
        this.prepareSocket();
      }
    },
    stream(ws, batch) {
      return new Promise((resolve) => {
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

        const send = async () => {
          for (const item of batch) {
            if (closed) return;
            item.state = "uploading";
            ws.send(JSON.stringify({ filename: item.name, size: item.size }));
            for (let start = 0; start < item.size && item.state === "uploading"; start += READ) {
              const buffer = await item.file.slice(start, Math.min(item.size, start + READ)).arrayBuffer();
              for (let offset = 0; offset < buffer.byteLength; ) {
                // Backpressure: the server acknowledges every chunk it has read.
                while (!closed && item.state === "uploading" && (inFlight() >= WINDOW || ws.bufferedAmount >= WINDOW)) {
                  await new Promise((resolveWaiter) => {
                    wakers.push(resolveWaiter);
                    setTimeout(resolveWaiter, 50); // bufferedAmount has no event
                  });
                }
                if (closed) return;
                if (item.state !== "uploading") break; // refused from its header: the rest is not sent
                const length = Math.min(CHUNK, buffer.byteLength - offset);
                ws.send(new Uint8Array(buffer, offset, length));
                offset += length;
                item.sent = start + offset;
              }
            }
            if (item.size === 0 && item.state === "uploading") item.state = "checking";
          }
          if (!closed) ws.send(JSON.stringify({ type: "done" }));
        };

        const verdict = (message) => {
          const pending = awaiting();
          const name = fold(message.filename || "");
          const item =
            pending.find((i) => !i.archive && fold(i.name) === name) ||
            pending.find((i) => i.archive && fold(i.name) === name) ||
            pending.find((i) => i.archive && i.state === "checking") || // a member of an archive
            pending.find((i) => i.state === "checking"); // a name the server wrote differently
          if (!item) return;
          if (item.archive && fold(item.name) !== name) {
            if (message.status === 200 && message.image) item.stored++;
            return;
          }
          this.settle(item, message.status, message.image, message.duplicate_of, message.detail);
          wake();
        };

        ws.onmessage = (event) => {
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
              item.progress = item.size ? item.acked / item.size : 1;
              if (item.acked >= item.size) item.state = "checking";
            }
            wake();
          } else if (message.type === "result") {
            verdict(message);
          } else if (message.type === "summary") {
            finished = true;
            for (const item of awaiting()) this.settle(item, 200, null, null, "");
          } else if (message.type === "error") {
            stopDetail = message.detail || "";
          }
        };
        ws.onclose = () => {
          closed = true;
          wake();
          if (!finished) {
            const detail = stopDetail || "the connection to the server was lost";
            for (const item of batch) {
              if (["queued", "uploading", "checking"].includes(item.state)) this.settle(item, 0, null, null, detail);
            }
            this.$emit("stopped", detail);
          }
          resolve();
        };
        send().catch((error) => {
          stopDetail = String(error);
          ws.close();
        });
      });
    },
    overHttp(batch) {
      return new Promise((resolve) => {
        const form = new FormData();
        for (const item of batch) {
          item.state = "uploading";
          form.append("files", item.file, item.name);
        }
        const xhr = new XMLHttpRequest();
        xhr.open("POST", (this.url.startsWith("/") ? window.path_prefix || "" : "") + this.url);
        let loaded = 0;
        let frame = null;
        const paint = () => {
          frame = null;
          let rest = loaded;
          for (const item of batch) {
            const got = Math.max(0, Math.min(item.size, rest));
            rest -= item.size;
            item.progress = item.size ? got / item.size : 1;
            if (item.progress >= 1 && item.state === "uploading") item.state = "checking";
          }
        };
        xhr.upload.onprogress = (event) => {
          loaded = event.loaded;
          if (frame === null) frame = requestAnimationFrame(paint);
        };
        xhr.onload = () => {
          let body = {};
          try {
            body = JSON.parse(xhr.responseText);
          } catch (error) {
            body = { detail: `the server answered ${xhr.status}` };
          }
          const refused = new Map((body.rejected || []).map((r) => [fold(r.filename), r]));
          const stored = new Map((body.accepted || []).map((r) => [fold(r.filename), r]));
          const copies = new Map((body.duplicates || []).map((d) => [fold(d.filename), d]));
          for (const item of batch) {
            const name = fold(item.name);
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
    settle(item, status, image, duplicateOf, detail) {
      item.progress = 1;
      if (status === 200 || status === 201) {
        item.state = "done";
        if (image) item.stored++;
        if (image && !item.archive) this.showVerified(item, image.id);
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
    showVerified(item, imageId) {
      // The server's thumbnail replaces the local preview on the tile as soon as it is loaded; the
      // gallery card's copy then comes from the browser's cache.
      const verified = new Image();
      verified.onload = () => {
        if (!this.items.includes(item)) return;
        this.revokePreview(item);
        item.preview = verified.src;
      };
      verified.src = `${window.path_prefix || ""}${this.thumbnailUrl}${imageId}`;
    },
    giveWay(item, imageId) {
      // The local preview stays until the gallery shows the server's verified thumbnail.
      const started = Date.now();
      const check = () => {
        const thumb = imageId && document.querySelector(`[data-image-id="${imageId}"] img.dr-thumb`);
        if ((thumb && thumb.complete && thumb.naturalWidth > 0) || Date.now() - started > KEEP_DONE) this.remove(item);
        else setTimeout(check, 100);
      };
      check();
    },
    later(item, ms) {
      setTimeout(() => this.remove(item), ms);
    },
    revokePreview(item) {
      if (item.preview && item.preview.startsWith("blob:")) {
        URL.revokeObjectURL(item.preview);
        this.previews--;
      }
      item.preview = "";
    },
    revoke(item) {
      this.revokePreview(item);
      item.file = null; // the bytes are on the server now: let the browser free them
    },
    remove(item) {
      this.revoke(item);
      this.items = this.items.filter((other) => other !== item);
    },
  },
};
