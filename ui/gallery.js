// The gallery: every card of the workspace in one component. Python (ui/gallery.py) owns the cards;
// it sends the whole list once this component says it is mounted ("ready"), then only what changed
// ("apply": cards added or replaced, ids removed), a burst at a time. Each card is a small child
// component: a card is drawn again only when Python sent a new record for it, so a card added to a
// gallery of hundreds costs one card's render, not hundreds. What a user does on a card (open,
// delete, rate, tag, untag, select) goes back to Python as an event; nothing here decides anything.
// Which thumbnails have loaded goes to the drop zone through ui/thumbnails.js (cardsShown): its local
// preview of a file gives way to the card once the card is on screen.
//
// Keyboard, with the focus in the gallery: arrows move between cards, Enter opens the card, Space
// adds it to the selection or takes it out, 0-5 rate it, Delete deletes it, Escape empties the
// selection. A click selects one card, Ctrl/Cmd-click adds or removes one, Shift-click a range.

import { cardsShown, takeThumbnail } from "thumbnails";

const STARS = [1, 2, 3, 4, 5];
const MAX_LOCAL_THUMBNAILS = 1000; // cards drawn from the thumbnail their upload brought (data: URLs)

const DrCard = {
  props: { card: Object, thumbnail: String, selected: Boolean, focused: Boolean },
  emits: ["open", "delete", "rate", "tag", "untag", "pick", "loaded"],
  template: `
    <div class="dr-card" :class="{ 'dr-selected': selected, 'dr-focused': focused, 'dr-rejected': card.verdict === 'rejected' }"
         :data-image-id="card.id" :data-verdict="card.verdict || ''"
         role="gridcell" :aria-selected="selected" @click="$emit('pick', $event)">
      <img class="dr-thumb" :src="thumbnail" :alt="card.name" draggable="false" @click.stop="$emit('open')"
           @load="$emit('loaded')" />
      <div class="dr-card-row">
        <div class="dr-card-text">
          <div class="dr-name" data-testid="card-name" :title="card.name">{{ card.name }}</div>
          <div class="dr-meta">{{ card.meta }}</div>
        </div>
        <button type="button" class="dr-icon-button" data-testid="delete-image" title="Delete this image"
                @click.stop="$emit('delete')"><i class="material-icons">delete</i></button>
      </div>
      <div class="dr-strip" :data-annotation-version="card.version">
        <div class="dr-card-row">
          <span class="dr-stars" data-testid="card-rating" title="Rate this image for everyone">
            <button v-for="n in stars" :key="n" type="button" class="dr-star" :class="{ 'dr-star-on': n <= card.rating }"
                    :data-star="n" :aria-label="n + ' stars'" @click.stop="$emit('rate', n === card.rating ? 0 : n)">★</button>
          </span>
          <span class="grow"></span>
          <i v-if="card.verdict" class="material-icons dr-verdict" :class="'dr-verdict-' + card.verdict" data-testid="card-pick"
             :title="card.verdict === 'picked' ? 'Picked' : 'Rejected'">{{ card.verdict === "picked" ? "check_circle" : "cancel" }}</i>
          <i v-if="card.note" class="material-icons dr-note" data-testid="card-note" :title="card.note">sticky_note_2</i>
          <button type="button" class="dr-icon-button" data-testid="add-tag" title="Add a tag"
                  @click.stop="$emit('tag')"><i class="material-icons">sell</i></button>
        </div>
        <div v-if="card.tags.length" class="dr-chips">
          <span v-for="[tag, colour] in card.tags" :key="tag" class="dr-chip" :data-tag="tag" :style="{ background: colour }">
            {{ tag }}<button type="button" class="dr-chip-remove" :title="'Remove the tag ' + tag"
                             @click.stop="$emit('untag', tag)">×</button>
          </span>
        </div>
        <div class="dr-name dr-by" data-testid="updated-by">{{ card.by ? "✎ " + card.by : "" }}</div>
      </div>
    </div>
  `,
  data: () => ({ stars: STARS }),
};

export default {
  components: { DrCard },
  template: `
    <div class="dr-grid dr-gallery" role="grid" tabindex="0" aria-label="Images of this workspace" @keydown="onKey">
      <dr-card v-for="card in shown" :key="card.id" :card="card" :thumbnail="thumbnailOf(card.id)"
               :selected="selection.has(card.id)" :focused="focus === card.id"
               @open="emit('open', card.id)" @delete="emit('delete', card.id)"
               @rate="(stars) => emit('rate', [card.id, stars])" @tag="emit('tag', card.id)"
               @untag="(tag) => emit('untag', [card.id, tag])" @pick="(event) => pick(card.id, event)"
               @loaded="loaded(card.id)" />
    </div>
  `,
  props: {
    thumbnail: String, // the thumbnail URL with "{id}" for the image id
  },
  data() {
    return { revision: 0, selection: new Set(), focus: null };
  },
  created() {
    // Not reactive: the cards are frozen records (Vue leaves them as they are); `revision` says when
    // the list changed.
    this.order = [];
    this.cards = new Map();
    this.anchor = null; // where a Shift-click range starts
    this.sources = new Map(); // card id -> its thumbnail's src, chosen once (thumbnailOf)
    this.local = new Set(); // card ids whose src is a data: URL, oldest first
  },
  mounted() {
    this.$emit("ready");
  },
  computed: {
    shown() {
      this.revision; // eslint-disable-line no-unused-expressions
      const shown = [];
      for (const id of this.order) {
        const card = this.cards.get(id);
        if (!card.hidden) shown.push(card);
      }
      return shown;
    },
  },
  methods: {
    // -- from Python --
    reset(cards) {
      const kept = new Set(cards.map((card) => card.id));
      for (const id of [...this.sources.keys()]) if (!kept.has(id)) this.forgetSource(id);
      this.order = [];
      this.cards = new Map();
      this.apply(cards, []);
      this.select([...this.selection].filter((id) => this.cards.has(id)));
    },
    apply(cards, removed) {
      for (const card of cards) {
        if (!this.cards.has(card.id)) this.order.push(card.id);
        this.cards.set(card.id, Object.freeze(card));
      }
      if (removed.length) {
        const gone = new Set(removed);
        for (const id of gone) {
          this.cards.delete(id);
          this.forgetSource(id);
        }
        this.order = this.order.filter((id) => !gone.has(id));
        if (gone.has(this.focus)) this.focus = null;
        if ([...gone].some((id) => this.selection.has(id))) this.select([...this.selection].filter((id) => !gone.has(id)));
      }
      this.revision += 1;
    },
    // -- to Python (and the drop zone, through ui/thumbnails.js) --
    emit(name, value) {
      this.$emit(name, value);
    },
    loaded(id) {
      cardsShown([id]);
    },
    thumbnailOf(id) {
      // A card's thumbnail is chosen once: the one its upload brought (ui/thumbnails.js, a data:
      // URL) or the server's URL. At most MAX_LOCAL_THUMBNAILS cards keep a data: URL; the oldest
      // then go back to the server's URL (a fetch, if they are drawn again).
      let src = this.sources.get(id);
      if (src === undefined) {
        src = takeThumbnail(id) || this.thumbnail.replace("{id}", encodeURIComponent(id));
        this.sources.set(id, src);
        if (src.startsWith("data:")) this.keepLocal(id);
      }
      return src;
    },
    keepLocal(id) {
      this.local.add(id);
      for (const oldest of this.local) {
        if (this.local.size <= MAX_LOCAL_THUMBNAILS) break;
        this.local.delete(oldest);
        this.sources.set(oldest, this.thumbnail.replace("{id}", encodeURIComponent(oldest)));
      }
    },
    forgetSource(id) {
      this.local.delete(id);
      this.sources.delete(id);
    },
    select(ids) {
      const before = this.selection;
      this.selection = new Set(ids);
      if (before.size !== this.selection.size || [...before].some((id) => !this.selection.has(id))) {
        this.$emit("selection", [...this.selection]);
      }
    },
    pick(id, event) {
      this.focus = id;
      if (event.shiftKey && this.anchor !== null) {
        const ids = this.shown.map((card) => card.id);
        const [from, to] = [ids.indexOf(this.anchor), ids.indexOf(id)].sort((a, b) => a - b);
        if (from >= 0) return this.select(ids.slice(from, to + 1));
      }
      this.anchor = id;
      if (event.ctrlKey || event.metaKey) this.toggle(id);
      else this.select([id]);
    },
    toggle(id) {
      const ids = new Set(this.selection);
      if (ids.has(id)) ids.delete(id);
      else ids.add(id);
      this.select([...ids]);
    },
    // -- keyboard --
    onKey(event) {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const move = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -this.columns(), ArrowDown: this.columns() }[event.key];
      const rating = event.key.length === 1 && event.key >= "0" && event.key <= "5";
      // On a card's button, Enter and Space press the button; arrows and digits still go to the grid.
      if (event.target !== this.$el && move === undefined && !rating) return;
      const ids = this.shown.map((card) => card.id);
      if (!ids.length) return;
      const at = ids.indexOf(this.focus);
      if (move !== undefined) {
        const next = at < 0 ? 0 : Math.min(ids.length - 1, Math.max(0, at + move));
        this.focusCard(ids[next]);
      } else if (at < 0) {
        return;
      } else if (event.key === "Enter") {
        this.emit("open", this.focus);
      } else if (event.key === " ") {
        this.toggle(this.focus);
      } else if (rating) {
        this.emit("rate", [this.focus, Number(event.key)]);
      } else if (event.key === "Delete") {
        this.emit("delete", this.focus);
      } else if (event.key === "Escape") {
        this.select([]);
      } else {
        return;
      }
      event.preventDefault();
    },
    columns() {
      // Cards in one row of the grid, as laid out now (the grid fills the width).
      const template = getComputedStyle(this.$el).gridTemplateColumns;
      return Math.max(1, template.split(" ").filter((track) => track !== "").length);
    },
    focusCard(id) {
      this.focus = id;
      this.anchor = id;
      if (document.activeElement !== this.$el) this.$el.focus({ preventScroll: true });
      this.$nextTick(() => {
        const card = this.$el.querySelector(`[data-image-id="${CSS.escape(id)}"]`);
        if (card) card.scrollIntoView({ block: "nearest" });
      });
    },
  },
};
