// bench/ui.py's clock, installed in the page before the files are chosen (execute_script).
// arguments[0]: {names, picture, stored, key, eager}
//   names:   the chosen files' names: only pictures of these count (not a filled workspace's)
//   picture: CSS selector of an <img> that shows a file (a local preview or a server picture)
//   stored:  CSS selector of the server's picture of a file: the file is stored and processed
//   key:     how an <img> names its file: "alt" or "caption" (Streamlit's caption under it)
//   eager:   lazy images are made eager, so every file's picture loads as in Darkroom's gallery
// Times are performance.now() in ms, from the file input's change event (capture phase: first).
// window.__clock.done resolves once every file has a picture and a stored picture.
(({ names, picture, stored, key, eager }) => {
  const expected = new Set(names);
  const clock = { t0: null, first: null, all: null, stored: null, longest: 0, longtasks: false };
  const pictured = new Set();
  const kept = new Set();
  let finish;
  clock.done = new Promise((resolve) => {
    finish = resolve;
  });
  const nameOf = {
    alt: (img) => img.alt,
    caption: (img) => {
      const caption = img.parentElement && img.parentElement.querySelector("[data-testid=stImageCaption]");
      return caption ? caption.textContent.trim() : "";
    },
  }[key];
  document.addEventListener(
    "change",
    (event) => {
      if (clock.t0 === null && event.target.matches && event.target.matches("input[type=file]")) {
        clock.t0 = performance.now();
      }
    },
    true,
  );
  document.addEventListener(
    "load",
    (event) => {
      const img = event.target;
      if (clock.t0 === null || !(img instanceof HTMLImageElement) || !img.matches(picture) || !img.naturalWidth) return;
      const name = nameOf(img);
      if (!expected.has(name)) return;
      const now = performance.now();
      if (clock.first === null) clock.first = now;
      pictured.add(name);
      if (clock.all === null && pictured.size === expected.size) clock.all = now;
      if (img.matches(stored)) {
        kept.add(name);
        if (clock.stored === null && kept.size === expected.size) clock.stored = now;
      }
      if (clock.all !== null && clock.stored !== null) finish();
    },
    true,
  );
  if (eager) {
    const wake = (node) => {
      if (!(node instanceof Element)) return;
      const images = node.matches("img[loading=lazy]") ? [node] : node.querySelectorAll("img[loading=lazy]");
      for (const img of images) img.loading = "eager";
    };
    new MutationObserver((records) => {
      for (const record of records) record.addedNodes.forEach(wake);
    }).observe(document.documentElement, { childList: true, subtree: true });
  }
  try {
    clock.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) clock.longest = Math.max(clock.longest, entry.duration);
    });
    clock.observer.observe({ type: "longtask" });
    clock.longtasks = true;
  } catch {
    // a browser without long-task timing: reported as such, never as 0 ms
  }
  clock.counts = () => ({ pictured: pictured.size, stored: kept.size, expected: expected.size });
  clock.result = () => {
    if (clock.observer) {
      for (const entry of clock.observer.takeRecords()) clock.longest = Math.max(clock.longest, entry.duration);
    }
    const since = (t) => (t === null ? null : (t - clock.t0) / 1000);
    return {
      first: since(clock.first),
      all: since(clock.all),
      stored: since(clock.stored),
      longest: clock.longtasks ? clock.longest / 1000 : null,
    };
  };
  window.__clock = clock;
})(arguments[0]);
