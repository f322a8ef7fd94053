// Darkroom's drop zone: drag and drop or pick, one streaming request per drop, progress and the
// server's verdict per file. Bytes go straight from the browser to the page's upload route.
export default {
  template: `
    <div class="dr-dropzone" :class="{ 'dr-dragging': dragging }" role="button" tabindex="0"
         @dragenter.prevent="dragging = true" @dragover.prevent="dragging = true"
         @dragleave.prevent="dragging = false" @drop.prevent="onDrop"
         @click="$refs.input.click()" @keydown.enter="$refs.input.click()">
      <input ref="input" type="file" multiple :accept="accept" class="dr-file-input" @change="onPick" @click.stop />
      <div class="dr-dropzone-label">
        <q-icon name="cloud_upload" size="sm" />
        <span>{{ label }}</span>
      </div>
      <div v-if="items.length" class="dr-upload-list" @click.stop>
        <div v-for="item in items" :key="item.key" class="dr-upload-item" :class="'dr-' + item.state">
          <q-icon :name="icons[item.state]" size="xs" />
          <span class="dr-upload-name" :title="item.name">{{ item.name }}</span>
          <span v-if="item.detail" class="dr-upload-detail">{{ item.detail }}</span>
          <q-linear-progress v-else :value="item.progress" instant-feedback class="dr-upload-bar" />
          <span class="dr-upload-size">{{ Math.round(item.progress * 100) }}% of {{ item.sizeLabel }}</span>
        </div>
      </div>
    </div>`,
  props: {
    url: String,
    label: String,
    accept: String,
    maxImageBytes: Number,
    maxArchiveBytes: Number,
  },
  data() {
    return { dragging: false, items: [], icons: { uploading: "upload", done: "check_circle", failed: "error" } };
  },
  methods: {
    onPick(event) {
      this.send([...event.target.files]);
      event.target.value = "";
    },
    onDrop(event) {
      this.dragging = false;
      this.send([...event.dataTransfer.files]);
    },
    isArchive(file) {
      return /\.zip$/i.test(file.name) || /zip/.test(file.type);
    },
    sizeLabel(bytes) {
      return bytes < 1048576 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`;
    },
    send(files) {
      // The server enforces the limits; holding oversized files back here keeps one of them from
      // stopping the whole drop.
      const fits = (f) => f.size <= (this.isArchive(f) ? this.maxArchiveBytes : this.maxImageBytes);
      const rejected = files.filter((f) => !fits(f));
      const accepted = files.filter(fits);
      if (rejected.length) this.$emit("rejected", rejected.map((f) => ({ name: f.name, size: f.size })));
      if (!accepted.length) return;
      const start = this.items.length;
      for (const f of accepted) {
        this.items.push({
          key: `${Date.now()}-${Math.random()}`,
          name: f.name,
          size: f.size,
          sizeLabel: this.sizeLabel(f.size),
          progress: 0,
          state: "uploading",
          detail: "",
        });
      }
      const batch = this.items.slice(start, start + accepted.length); // the reactive copies
      const form = new FormData();
      for (const f of accepted) form.append("files", f, f.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", (this.url.startsWith("/") ? window.path_prefix : "") + this.url);
      let loaded = 0;
      let frame = null;
      const paint = () => {
        frame = null;
        let rest = loaded;
        for (const item of batch) {
          const got = Math.max(0, Math.min(item.size, rest));
          rest -= item.size;
          item.progress = item.size ? got / item.size : 1;
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
        const refused = new Map((body.rejected || []).map((r) => [r.filename, r.detail]));
        const stored = new Set([...(body.accepted || []), ...(body.duplicates || [])].map((r) => r.filename));
        for (const item of batch) {
          item.progress = 1;
          if (refused.has(item.name)) {
            item.state = "failed";
            item.detail = refused.get(item.name);
          } else if (xhr.status >= 400 && !stored.has(item.name)) {
            item.state = "failed";
            item.detail = body.detail || `the server answered ${xhr.status}`;
          } else {
            item.state = "done";
          }
        }
        this.forget(batch);
      };
      xhr.onerror = () => {
        for (const item of batch) {
          item.state = "failed";
          item.detail = "the connection to the server was lost";
        }
        this.forget(batch);
      };
      xhr.send(form);
    },
    forget(batch) {
      // Finished files leave the list soon; refusals stay a while (the page also lists them).
      const later = (state, ms) =>
        setTimeout(() => {
          this.items = this.items.filter((item) => !(batch.includes(item) && item.state === state));
        }, ms);
      later("done", 1500);
      later("failed", 8000);
    },
  },
};
