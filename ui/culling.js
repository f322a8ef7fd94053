// The culling view: one image of the workspace at a time, full screen, driven by single keys.
// Python (ui/culling.py) owns the list: which images, in what order, each one's record; it sends
// the whole list ("reset"), then records that changed ("apply"), or where to go ("goto"). This
// component keeps only view state: its position and a few preloaded previews. A key is an event
// back to Python ("verdict", "undo", "close", "at" after every move); nothing here decides or
// merges anything. A verdict moves on at once; Python sends the new record when it is stored, or
// sends the view back to the image with a notice when it was refused.
//
// C on the page (not in a field or a dialog) asks Python to open the view ("open"); only that key
// goes to the server, not every key of the page.
//
// Keys: 0-5 rate, P pick, X reject, T tag (Enter adds, Esc cancels), arrows / Space / Shift+Space
// move, Home / End, Z undo, Esc close; plus the keys Python binds ("keys": key -> label).
//
// Preloading: the image shown, the one before it and the next PRELOAD_AHEAD are each an <img> of
// the stage, fetched at the size Python chose for this screen ("size") and decoded ahead; only the
// current one is visible. A move shows an image that is already decoded (no new request, no
// decode on the way), and at most KEEP_BEHIND + 1 + PRELOAD_AHEAD images are held: the others'
// elements go, and their decoded pixels with them.

const PRELOAD_AHEAD = 3;
const KEEP_BEHIND = 1;
const NOTICE_MS = 4000;
const SCREEN_MS = 250; // a window being resized is reported at most this often
const STARS = [1, 2, 3, 4, 5];

export default {
  template: `
    <div class="dr-cull-host">
      <div v-if="open" ref="root" class="dr-cull" tabindex="-1" data-testid="culling" role="dialog"
           aria-label="Culling" :data-index="index" :data-count="order.length"
           :data-image-id="current ? current.id : ''" :data-shown-id="shownId" @keydown="onKey" @wheel.prevent>
        <div class="dr-cull-bar">
          <span class="dr-cull-position" data-testid="cull-position">{{ order.length ? index + 1 : 0 }} / {{ order.length }}</span>
          <template v-if="current">
            <span class="dr-cull-name" data-testid="cull-name" :title="current.name">{{ current.name }}</span>
            <span class="dr-cull-meta">{{ current.meta }}</span>
            <span class="dr-cull-stars" data-testid="cull-rating" :data-rating="current.rating"
                  :data-annotation-version="current.version">
              <span v-for="n in stars" :key="n" :class="{ 'dr-star-on': n <= current.rating }">★</span>
            </span>
            <span v-if="current.pick" class="dr-cull-pick" :class="'dr-cull-' + current.pick"
                  data-testid="cull-pick" :data-pick="current.pick">{{ current.pick }}</span>
            <span v-for="[tag, colour] in current.tags" :key="tag" class="dr-chip" data-testid="cull-tag"
                  :data-tag="tag" :style="{ background: colour }">{{ tag }}</span>
            <span v-if="current.by" class="dr-cull-by" data-testid="cull-by">✎ {{ current.by }}</span>
          </template>
          <span class="grow"></span>
          <span v-for="[id, name, colour] in elsewhere" :key="name" class="dr-cull-viewer dr-cull-elsewhere"
                :style="{ borderColor: colour }" :title="name + ' looks at image ' + (positionOf(id) + 1)">
            {{ name }} · {{ positionOf(id) >= 0 ? positionOf(id) + 1 : "–" }}
          </span>
          <label class="dr-cull-toggle" title="Cull only the images without stars or a pick">
            <input type="checkbox" data-testid="cull-unrated" :checked="unrated" @change="toggled" /> Unrated only
          </label>
          <button type="button" class="dr-cull-close" data-testid="cull-close" title="Close (Esc)"
                  @click="$emit('close')"><i class="material-icons">close</i></button>
        </div>
        <div class="dr-cull-stage">
          <img v-for="id in nearby" :key="id" class="dr-cull-image" :class="{ 'dr-cull-hidden': id !== current.id }"
               :src="urlOf(id)" :alt="id === current.id ? current.name : ''" :data-image-id="id" draggable="false"
               @load="decoded(id, $event.target)" />
          <div v-if="!current" class="dr-cull-empty" data-testid="cull-empty">{{ loaded ? "No images to cull." : "…" }}</div>
          <div v-if="here.length" class="dr-cull-here">
            <span v-for="[id, name, colour] in here" :key="name" class="dr-cull-viewer" data-testid="cull-viewer"
                  :data-member-name="name" :style="{ background: colour }">{{ name }}</span>
          </div>
          <div v-if="tagging" class="dr-cull-tagbox">
            <input ref="tag" class="dr-cull-tag-input" data-testid="cull-tag-input" maxlength="64" :list="listId"
                   placeholder="tag, Enter to add" @keydown.stop="onTagKey" @blur="tagging = false" />
            <datalist :id="listId"><option v-for="tag in tags" :key="tag" :value="tag"></option></datalist>
          </div>
          <div v-if="message" class="dr-cull-notice" :class="{ 'dr-cull-warning': warning }"
               data-testid="cull-notice">{{ message }}</div>
        </div>
        <div class="dr-cull-help">
          0–5 stars · P pick · X reject · T tag · ←/→ Space move · Z undo · Esc close
          <span v-for="(label, key) in keys" :key="key"> · {{ key.toUpperCase() }} {{ label }}</span>
        </div>
      </div>
    </div>
  `,
  props: {
    preview: String, // the preview URL with "{id}" for the image id
    size: Number, // the preview's longest side for this screen (chosen by Python)
    open: Boolean,
    unrated: Boolean,
    tags: Array, // the workspace's tags to complete from, most used first
    viewers: Array, // the other members looking at an image: [image id, name, colour]
    keys: Object, // keys bound by Python: key -> label
  },
  emits: ["open", "ready", "screen", "at", "verdict", "undo", "close", "unrated", "tagging", "command"],
  data() {
    return { revision: 0, index: 0, shownId: "", tagging: false, message: "", warning: false, loaded: false };
  },
  created() {
    // Not reactive: records are frozen and replaced whole; `revision` says when they changed.
    this.order = [];
    this.records = new Map();
    this.positions = new Map();
    this.ready = new Set(); // ids of the nearby images loaded and decoded
    this.listId = `dr-cull-tags-${Math.random().toString(36).slice(2)}`;
    this.noticeTimer = null;
    this.screenTimer = null;
    this.onResize = () => {
      if (this.screenTimer !== null) return;
      this.screenTimer = setTimeout(() => {
        this.screenTimer = null;
        this.$emit("screen", this.screen());
      }, SCREEN_MS);
    };
    this.onPageKey = (event) => {
      if (this.open || event.repeat || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      if (event.key !== "c" && event.key !== "C") return;
      const target = event.target;
      if (target.closest && target.closest("input, textarea, select, [contenteditable], .q-dialog")) return;
      if (document.querySelector(".q-dialog")) return; // the detail or another dialog has the keys
      event.preventDefault();
      this.$emit("open");
    };
  },
  mounted() {
    window.addEventListener("resize", this.onResize);
    document.addEventListener("keydown", this.onPageKey);
    this.$emit("ready", this.screen());
  },
  beforeUnmount() {
    window.removeEventListener("resize", this.onResize);
    document.removeEventListener("keydown", this.onPageKey);
    clearTimeout(this.noticeTimer);
    clearTimeout(this.screenTimer);
  },
  watch: {
    open(now) {
      if (now) return;
      this.order = [];
      this.records = new Map();
      this.positions = new Map();
      this.ready.clear(); // the decoded previews go with the view (their elements are gone)
      this.loaded = false;
      this.tagging = false;
      this.revision += 1;
    },
    size() {
      this.ready.clear(); // new URLs: the nearby images load again
      this.shownId = "";
    },
  },
  computed: {
    current() {
      this.revision; // eslint-disable-line no-unused-expressions
      return this.order.length ? this.records.get(this.order[this.index]) : null;
    },
    here() {
      const id = this.current ? this.current.id : null;
      return (this.viewers || []).filter((viewer) => viewer[0] === id);
    },
    nearby() {
      this.revision; // eslint-disable-line no-unused-expressions
      const from = Math.max(0, this.index - KEEP_BEHIND);
      return this.order.slice(from, this.index + PRELOAD_AHEAD + 1);
    },
    elsewhere() {
      const id = this.current ? this.current.id : null;
      return (this.viewers || []).filter((viewer) => viewer[0] !== id);
    },
  },
  methods: {
    // -- from Python --
    reset(records, index) {
      this.order = records.map((record) => record.id);
      this.records = new Map(records.map((record) => [record.id, Object.freeze(record)]));
      this.positions = new Map(this.order.map((id, at) => [id, at]));
      this.loaded = true;
      this.revision += 1;
      this.goto(index);
      this.$nextTick(() => this.focus());
    },
    apply(records) {
      for (const record of records) {
        if (this.records.has(record.id)) this.records.set(record.id, Object.freeze(record));
      }
      this.revision += 1;
    },
    goto(index) {
      if (!this.order.length) {
        this.index = 0;
        return;
      }
      this.index = Math.min(this.order.length - 1, Math.max(0, index));
      const id = this.order[this.index];
      this.$emit("at", [this.index, id]);
      if (this.ready.has(id)) this.shownId = id;
      const kept = new Set(this.nearby);
      for (const loaded of this.ready) if (!kept.has(loaded)) this.ready.delete(loaded);
    },
    notice(text, warning) {
      this.message = text;
      this.warning = Boolean(warning);
      clearTimeout(this.noticeTimer);
      this.noticeTimer = setTimeout(() => (this.message = ""), NOTICE_MS);
    },
    // -- view state --
    screen() {
      const ratio = window.devicePixelRatio || 1;
      return [Math.round(window.innerWidth * ratio), Math.round(window.innerHeight * ratio)];
    },
    urlOf(id) {
      return `${this.preview.replace("{id}", encodeURIComponent(id))}?size=${this.size}`;
    },
    positionOf(id) {
      this.revision; // eslint-disable-line no-unused-expressions
      return this.positions.has(id) ? this.positions.get(id) : -1;
    },
    decoded(id, element) {
      // Decoded now, not when it is first painted: the move to it has nothing left to wait for.
      const done = () => {
        this.ready.add(id);
        if (this.current && this.current.id === id) this.shownId = id;
      };
      element.decode().then(done, done);
    },
    focus() {
      if (this.$refs.root && document.activeElement !== this.$refs.tag) this.$refs.root.focus({ preventScroll: true });
    },
    move(step) {
      if (!this.order.length) return;
      const next = this.index + step;
      if (next >= this.order.length) this.notice("That was the last image.");
      this.goto(next);
    },
    verdict(kind, value) {
      if (!this.current) return;
      this.$emit("verdict", [kind, this.current.id, value]);
      this.move(1);
    },
    toggled(event) {
      this.$emit("unrated", event.target.checked);
      this.focus();
    },
    // -- keyboard --
    onKey(event) {
      if (event.altKey || event.ctrlKey || event.metaKey || event.target.tagName === "INPUT") return;
      const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
      if (key >= "0" && key <= "5" && key.length === 1) this.verdict("rate", Number(key));
      else if (key === "p") this.verdict("pick", "picked");
      else if (key === "x") this.verdict("pick", "rejected");
      else if (key === "t") this.startTagging();
      else if (key === "z") this.$emit("undo");
      else if (key === "Escape") this.$emit("close");
      else if (key === "ArrowRight" || key === "ArrowDown" || (key === " " && !event.shiftKey)) this.move(1);
      else if (key === "ArrowLeft" || key === "ArrowUp" || key === " ") this.move(-1);
      else if (key === "Home") this.goto(0);
      else if (key === "End") this.goto(this.order.length - 1);
      else if (this.keys && key in this.keys && this.current) this.$emit("command", [key, this.current.id]);
      else return;
      event.preventDefault();
    },
    startTagging() {
      if (!this.current) return;
      this.tagging = true;
      this.$emit("tagging");
      this.$nextTick(() => this.$refs.tag && this.$refs.tag.focus());
    },
    onTagKey(event) {
      if (event.key === "Enter") {
        const text = event.target.value.trim();
        this.tagging = false;
        if (text) this.verdict("tag", text);
      } else if (event.key === "Escape") {
        this.tagging = false;
      } else {
        return;
      }
      event.preventDefault();
      this.$nextTick(() => this.focus());
    },
  },
};
