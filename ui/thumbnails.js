// Thumbnails the page's upload socket brought with its results (the server's own thumbnail bytes,
// sent right after a stored image's "result"), shared by the drop zone that receives them and the
// gallery that shows them: a new card is drawn from here instead of fetching its thumbnail again.
// In a drop of hundreds of small photos those fetches, six at a time per host, queued for tenths of
// a second and held every card back.
//
// The drop zone puts; the gallery takes (it then owns the object URL and revokes it when the card
// goes). What is never taken (a card filtered out, a page that shows no gallery) is revoked once
// more than MAX_WAITING wait, oldest first.

const MAX_WAITING = 500;
const waiting = new Map(); // image id -> object URL, oldest first

export function putThumbnail(imageId, blob) {
  if (waiting.has(imageId)) URL.revokeObjectURL(waiting.get(imageId));
  waiting.set(imageId, URL.createObjectURL(blob));
  while (waiting.size > MAX_WAITING) {
    const [oldest, url] = waiting.entries().next().value;
    waiting.delete(oldest);
    URL.revokeObjectURL(url);
  }
}

// The object URL of the image's thumbnail, now the caller's to revoke; undefined when none came.
export function takeThumbnail(imageId) {
  const url = waiting.get(imageId);
  waiting.delete(imageId);
  return url;
}
