// Thumbnails the page's upload socket brought with its results (the server's own thumbnail bytes,
// sent right after a stored image's "result", as data: URLs), shared by the drop zone that receives
// them and the gallery that shows them: a new card is drawn from here instead of fetching its
// thumbnail again. In a drop of hundreds of small photos those fetches, six at a time per host,
// queued for tenths of a second and held every card back.
//
// The drop zone puts; the gallery takes each once. What is never taken (a card filtered out, a page
// that shows no gallery) is dropped once more than MAX_WAITING wait, oldest first.
//
// The other way, the gallery says which cards' thumbnails have loaded (cardsShown) and the drop zone
// listens (onCardsShown): its local preview of the file gives way to the card, without a round trip
// through Python per burst.

const MAX_WAITING = 500;
const waiting = new Map(); // image id -> data: URL, oldest first

export function putThumbnail(imageId, url) {
  waiting.delete(imageId);
  waiting.set(imageId, url);
  while (waiting.size > MAX_WAITING) waiting.delete(waiting.keys().next().value);
}

const shownListeners = new Set();

// The gallery: the thumbnails of these cards have loaded.
export function cardsShown(imageIds) {
  for (const listener of shownListeners) listener(imageIds);
}

// `listener(imageIds)` for each cardsShown; returns what stops it.
export function onCardsShown(listener) {
  shownListeners.add(listener);
  return () => shownListeners.delete(listener);
}

// The image's thumbnail as a data: URL, or undefined when none came; it is taken out.
export function takeThumbnail(imageId) {
  const url = waiting.get(imageId);
  waiting.delete(imageId);
  return url;
}
