"""The page's upload and download paths in real headless Chromium against the real server process:
WebSocket upload with local previews, folders, paste, HEIC/AVIF, Download all, the dashboard's
scatter, keyboard navigation in the detail and the HTTP fallback when WebSockets are blocked.

Locally these tests skip when Chromium is missing; in CI (``CI=true``) a missing browser fails.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image

from core.units import format_bytes
from tests.browser import MISSING, loaded_thumbnails, wait_for
from tests.helpers import DATA, free_port, jpeg_with_exif_thumbnail, make_jpeg

if MISSING:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

PHOTOS = sorted((DATA / "features" / "images").iterdir())


def everywhere(code: str) -> str:
    """A script that runs ``code`` on the page and in every module worker the page starts (the drop
    zone's upload socket and local previews live in two), with ``self`` as the global scope there:
    each worker is started from a module that imports the worker's script, then runs ``code``, before
    the worker takes its first message. Scripts of several calls add up (each wraps the Worker the
    one before left)."""
    return f"""{{  // a block: two of these scripts on one page keep their own constants
const __everywhere = {json.dumps(code)};
(0, eval)(__everywhere);
if (window.Worker) {{
  const __RealWorker = window.Worker;
  window.Worker = class extends __RealWorker {{
    constructor(url, options) {{
      const boot = `import ${{JSON.stringify(new URL(url, location.href).href)}};\\n` + __everywhere;
      super(URL.createObjectURL(new Blob([boot], {{ type: 'text/javascript' }})), options);
    }}
  }};
}}
}}
"""


# Records, from the moment the page starts, every WebSocket it or its workers open (a worker reports
# through a BroadcastChannel), when the first local preview showed and when the first server
# thumbnail finished loading (performance.now(), same clock). A local preview is a data: URL.
INSTRUMENT = (
    everywhere("""
(function (scope) {
  const channel = new BroadcastChannel('darkroom-test-sockets');
  const Original = scope.WebSocket;
  scope.WebSocket = class extends Original {
    constructor(url, protocols) {
      super(url, protocols);
      channel.postMessage({ url: String(url), worker: typeof WorkerGlobalScope !== 'undefined' });
    }
  };
})(self);
""")
    + """
window.__sockets = [];
new BroadcastChannel('darkroom-test-sockets').onmessage = (event) => window.__sockets.push(event.data);
window.__firstPreview = null;
window.__firstThumbnail = null;
document.addEventListener('DOMContentLoaded', () => {
  new MutationObserver(() => {
    if (window.__firstPreview === null && document.querySelector('img.dr-local-preview[src^="data:"]')) {
      window.__firstPreview = performance.now();
    }
  }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ['src'] });
});
document.addEventListener('load', (event) => {
  if (window.__firstThumbnail === null && event.target.matches && event.target.matches('img.dr-thumb')) {
    window.__firstThumbnail = performance.now();
  }
}, true);
"""
)

# A network that drops the upgrade of the page's upload socket (a proxy or firewall without
# WebSockets there): every such socket fails to open, in the page and in its upload worker. The
# page's own NiceGUI socket is left alone.
BLOCK_UPLOAD_SOCKETS = everywhere("""
(function (scope) {
  const Real = scope.WebSocket;
  scope.WebSocket = class extends Real {
    constructor(url, protocols) {
      if (!String(url).includes('/_darkroom/ws/')) { super(url, protocols); return; }
      const blocked = { url: String(url), readyState: 0, bufferedAmount: 0, send() { throw new Error('not open'); },
                        close() {} };
      setTimeout(() => {
        blocked.readyState = 3;
        if (blocked.onerror) blocked.onerror(new Event('error'));
        if (blocked.onclose) blocked.onclose({ code: 1006, reason: '' });
      }, 20);
      return blocked;
    }
  };
})(self);
""")

# The upload sockets' messages leave 1.5 s late (in order): the server's thumbnails cannot come
# before a local decode, so a test of the decoded preview does not race a fast local server.
SLOW_UPLOAD_SOCKETS = everywhere("""
(function (scope) {
  const Real = scope.WebSocket;
  scope.WebSocket = class extends Real {
    send(data) {
      if (!this.url.includes('/_darkroom/ws/')) { super.send(data); return; }
      setTimeout(() => { try { super.send(data); } catch (error) {} }, 1500);
    }
  };
})(self);
""")

THUMBNAIL_FETCHES = (
    "return performance.getEntriesByType('resource').filter(e => e.name.includes('/_darkroom/thumbnail/')).length"
)
HTTP_UPLOADS = (
    "return performance.getEntriesByType('resource').filter(e => e.name.includes('/_darkroom/upload/')).length"
)


def open_workspace(driver: Any, url: str, before_load: str | None = None) -> None:
    """Open the page; ``before_load`` runs in it before any of its own scripts."""
    if before_load:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": before_load})
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=usage]"), message="page did not load")


def filenames(driver: Any) -> list[str]:
    return sorted(
        e.get_attribute("title") for e in driver.find_elements(By.CSS_SELECTOR, ".dr-card [data-testid=card-name]")
    )


def choose_files(driver: Any, *paths: Path) -> None:
    driver.find_element(By.CSS_SELECTOR, "input[type=file]:not([webkitdirectory])").send_keys(
        "\n".join(str(p) for p in paths)
    )


def click_tab(driver: Any, label: str) -> None:
    xpath = f"//div[contains(@class, 'q-tab ')][.//div[starts-with(normalize-space(), '{label}')]]"
    tab = wait_for(driver, lambda d: d.find_elements(By.XPATH, xpath))[0]
    driver.execute_script("arguments[0].click()", tab)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# The drop zone's fallback for a stored file whose card never says it is shown (KEEP_DONE) never fires:
# a local preview can then only give way to its card when the gallery says the card is on screen.
# Only that timer (its callback is the one that reads awaitingCard) is dropped.
NO_KEEP_DONE = """
const __realSetTimeout = window.setTimeout;
window.setTimeout = (callback, ms, ...rest) =>
  (String(callback).includes('awaitingCard') ? 0 : __realSetTimeout(callback, ms, ...rest));
"""


def test_chosen_files_travel_over_the_websocket_and_show_a_local_preview_first(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=INSTRUMENT + SLOW_UPLOAD_SOCKETS + NO_KEEP_DONE)
    choose_files(driver, *PHOTOS)
    wait_for(driver, lambda d: loaded_thumbnails(d) == len(PHOTOS), message="thumbnails did not appear")
    assert filenames(driver) == sorted(p.name for p in PHOTOS)
    sockets = driver.execute_script("return window.__sockets")
    uploads = [socket for socket in sockets if "/_darkroom/ws/upload/" in socket["url"]]
    assert uploads and all(socket["worker"] for socket in uploads), sockets  # off the page's main thread
    assert driver.execute_script(HTTP_UPLOADS) == 0  # nothing went through the HTTP fallback
    preview, thumbnail = driver.execute_script("return [window.__firstPreview, window.__firstThumbnail]")
    assert preview is not None and thumbnail is not None
    assert preview < thumbnail  # the browser's own preview came before the server's thumbnail
    # ... and gave way to it when the gallery showed the card: no local preview is left once every card is in
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".dr-pending-tile"))
    # The cards are drawn from the thumbnails the socket brought with the results, not fetched again.
    sources = [img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, ".dr-card img.dr-thumb")]
    assert len(sources) == len(PHOTOS) and any(src.startswith("data:image/") for src in sources), sources
    assert driver.execute_script(THUMBNAIL_FETCHES) == sum(not src.startswith("data:") for src in sources)
    driver.refresh()  # a page that did not upload them fetches them from the thumbnail route
    wait_for(driver, lambda d: loaded_thumbnails(d) == len(PHOTOS), message="thumbnails did not appear after a reload")
    sources = [img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, ".dr-card img.dr-thumb")]
    assert all("/_darkroom/thumbnail/" in src for src in sources), sources


# A browser without workers; a worker that never loads (as under a Content-Security-Policy without
# its script, or a browser without module workers: the browser reports it with an error event after
# the constructor returned); one that fails once it is given a batch. A failing worker takes no message.
FAILING_WORKER = """
window.Worker = class extends EventTarget {
  constructor() { super(); if (FAIL_AT === 'load') this.fail(); }
  fail() { setTimeout(() => { if (this.onerror) this.onerror(new Event('error')); }, 50); }
  postMessage(message) { if (FAIL_AT === 'batch' && message.type === 'batch') this.fail(); }
  terminate() {}
};
"""
NO_WORKER = {
    "missing": "window.Worker = undefined;",
    "failing at load": "const FAIL_AT = 'load';" + FAILING_WORKER,
    "failing on its first batch": "const FAIL_AT = 'batch';" + FAILING_WORKER,
}


@pytest.mark.parametrize("worker", list(NO_WORKER))
def test_without_a_working_worker_the_socket_runs_on_the_page(server, browser, worker) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=INSTRUMENT + NO_WORKER[worker])
    choose_files(driver, *PHOTOS[:2])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 2, message="the upload hung without its worker")
    assert filenames(driver) == sorted(p.name for p in PHOTOS[:2])
    uploads = [s for s in driver.execute_script("return window.__sockets") if "/_darkroom/ws/upload/" in s["url"]]
    assert uploads and not any(socket["worker"] for socket in uploads), uploads
    assert driver.execute_script(HTTP_UPLOADS) == 0  # the socket, not the HTTP fallback


@pytest.mark.parametrize("transport", ["socket", "http"])
def test_files_over_the_limit_are_held_back_in_one_notice_and_the_others_go(browser, tmp_path, transport) -> None:
    from tests.browser import ServerProcess

    limit = 40_000
    small = write(tmp_path, "small.jpg", make_jpeg(40, 30, seed=42))
    large = write(tmp_path, "large.png", os.urandom(limit + 1000))
    larger = write(tmp_path, "larger.png", os.urandom(limit + 5000))
    assert small.stat().st_size < limit < large.stat().st_size
    process = ServerProcess(free_port(), {"DARKROOM_FEATURE_WORKERS": "1", "DARKROOM_MAX_FILE_BYTES": str(limit)})

    def notices(driver: Any) -> list[str]:
        return [n.text for n in driver.find_elements(By.CSS_SELECTOR, ".q-notification") if "too large" in n.text]

    try:
        driver = browser()
        blocked = BLOCK_UPLOAD_SOCKETS if transport == "http" else ""
        open_workspace(driver, process.url, before_load=INSTRUMENT + blocked)
        choose_files(driver, large, small, larger)
        wait_for(driver, lambda d: filenames(d) == ["small.jpg"], message="the file within the limit was not stored")
        notice = wait_for(driver, notices, message="no word of the files held back")
        assert len(notice) == 1, notice  # both in one notice, each with its size
        assert f"large.png ({format_bytes(large.stat().st_size)})" in notice[0], notice
        assert f"larger.png ({format_bytes(larger.stat().st_size)})" in notice[0], notice
        assert f"at most {format_bytes(limit)}" in notice[0], notice
        assert not driver.find_elements(By.CSS_SELECTOR, ".dr-pending-tile[data-name^='large']")  # their tiles went
        assert (driver.execute_script(HTTP_UPLOADS) > 0) == (transport == "http")
        # A drop of nothing but files over the limit: named, nothing sent, nothing left waiting.
        driver.execute_script("document.querySelectorAll('.q-notification').forEach((n) => n.remove())")
        choose_files(driver, larger, large)
        notice = wait_for(driver, notices, message="no word of the second drop's files")
        assert "larger.png" in notice[0] and "large.png" in notice[0], notice
        wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".dr-pending-tile"), message="a tile was left")
        assert filenames(driver) == ["small.jpg"]
    finally:
        process.stop()


def test_a_refused_file_shows_the_apis_words_on_its_tile(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, DATA / "hostile" / "truncated.jpg", write(tmp_path, "fine.jpg", make_jpeg(seed=40)))
    wait_for(driver, lambda d: filenames(d) == ["fine.jpg"])
    tile = ".dr-pending-tile.dr-failed[data-name='truncated.jpg']"
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, tile), message="no refusal on the tile")
    assert "the JPEG data is corrupt" in driver.find_element(By.CSS_SELECTOR, tile).text


def test_a_folder_with_a_nested_folder_keeps_relative_names_and_skips_os_junk(server, browser, tmp_path) -> None:
    root = tmp_path / "trip"
    write(root, "beach.jpg", make_jpeg(90, 60, seed=41))
    write(root, "day 2/hills.jpg", make_jpeg(90, 60, seed=42))
    write(root, "day 2/night/stars.jpg", make_jpeg(90, 60, seed=43))
    write(root, ".DS_Store", b"\0\0\0\1Bud1")
    write(root, "day 2/Thumbs.db", b"junk")
    write(root, "day 2/._hills.jpg", b"resource fork")
    driver = browser()
    open_workspace(driver, server.url)
    driver.find_element(By.CSS_SELECTOR, "input[webkitdirectory]").send_keys(str(root))
    expected = ["trip/beach.jpg", "trip/day 2/hills.jpg", "trip/day 2/night/stars.jpg"]
    wait_for(driver, lambda d: filenames(d) == expected and loaded_thumbnails(d) == 3, message="folder not uploaded")
    assert "Thumbs.db" not in driver.page_source and "._hills.jpg" not in driver.page_source


def drop_paths(driver: Any, *paths: Path) -> None:
    """A real drag and drop of files or folders from the desktop onto the drop zone (through
    ChromeDevTools: the page sees a DataTransfer whose folders it walks with webkitGetAsEntry)."""
    zone = driver.find_element(By.CSS_SELECTOR, ".dr-dropzone")
    x, y = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]", zone
    )
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}
    driver.execute_cdp_cmd("Input.setInterceptDrags", {"enabled": False})
    for kind in ("dragEnter", "dragOver", "drop"):
        driver.execute_cdp_cmd("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})


def test_a_dropped_folder_is_walked_with_its_nested_folders(server, browser, tmp_path) -> None:
    root = tmp_path / "album"
    write(root, "cover.jpg", make_jpeg(90, 60, seed=47))
    write(root, "2025/summer/lake.jpg", make_jpeg(90, 60, seed=48))
    write(root, "__MACOSX/._cover.jpg", b"resource fork")
    write(root, "2025/desktop.ini", b"[.ShellClassInfo]")
    loose = write(tmp_path, "loose.jpg", make_jpeg(90, 60, seed=49))
    driver = browser()
    open_workspace(driver, server.url)
    drop_paths(driver, root, loose)
    expected = ["album/2025/summer/lake.jpg", "album/cover.jpg", "loose.jpg"]
    wait_for(driver, lambda d: filenames(d) == expected and loaded_thumbnails(d) == 3, message="drop not uploaded")
    assert "desktop.ini" not in driver.page_source


def test_pasting_an_image_adds_it_with_a_generated_name(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    png = io.BytesIO()
    Image.new("RGB", (64, 40), (200, 30, 90)).save(png, "PNG")
    driver.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'image.png', { type: 'image/png' }));
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
        """,
        base64.b64encode(png.getvalue()).decode(),
    )
    wait_for(driver, lambda d: loaded_thumbnails(d) == 1, message="the pasted image did not arrive")
    (name,) = filenames(driver)
    assert re.fullmatch(r"pasted-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.png", name), name


def test_heic_and_avif_photos_get_thumbnails(server, browser, tmp_path) -> None:
    import pillow_heif

    photo = Image.open(io.BytesIO(make_jpeg(160, 120, seed=44))).convert("RGB")
    heic = tmp_path / "phone.heic"
    pillow_heif.from_pillow(photo).save(heic, quality=80)
    avif = tmp_path / "web.avif"
    photo.save(avif, "AVIF", quality=60)
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, heic, avif)
    wait_for(driver, lambda d: loaded_thumbnails(d) == 2, timeout=40, message="HEIC/AVIF thumbnails did not appear")
    assert filenames(driver) == ["phone.heic", "web.avif"]
    assert "HEIF" in driver.page_source and "AVIF" in driver.page_source


def test_download_all_returns_the_uploads_byte_for_byte(server, browser, tmp_path) -> None:
    uploads = {
        "one.jpg": make_jpeg(80, 60, seed=45),
        "two.jpg": make_jpeg(60, 80, seed=46),
        "rotated.jpg": (DATA / "hostile" / "exif_orientation_6.jpg").read_bytes(),
    }
    paths = [write(tmp_path / "up", name, data) for name, data in uploads.items()]
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *paths)
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3)
    link = driver.find_element(By.CSS_SELECTOR, "[data-testid=download-all]")
    assert "/_darkroom/archive/" in link.get_attribute("href")  # a page token, never the session id
    driver.execute_script("arguments[0].click()", link)
    downloads = tmp_path / "downloads"

    def finished(_: Any) -> list[Path]:  # Chromium writes *.crdownload and renames it when done
        if not downloads.exists() or any(downloads.glob("*.crdownload")):
            return []
        return list(downloads.glob("*.zip"))

    archives = wait_for(driver, finished, timeout=30)
    with zipfile.ZipFile(archives[0]) as archive:
        assert sorted(archive.namelist()) == sorted(uploads)
        for name, data in uploads.items():
            assert archive.read(name) == data


def scatter_points(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(
        """
        const chart = getElement(document.querySelector('[data-testid=scatter]')).chart;
        const points = [];
        chart.getOption().series.forEach((series, index) => series.data.forEach(point => {
          const [x, y] = chart.convertToPixel({ seriesIndex: index }, point.value);
          points.push({ id: point.id, x, y });
        }));
        return points;
        """
    )


def detail_shows(driver: Any) -> str | None:
    """The image id the detail dialog shows, or None when it is closed (read in one step: the
    dialog is re-rendered while moving between images)."""
    return driver.execute_script(
        "const e = [...document.querySelectorAll('[data-testid=detail]')].find(e => e.offsetParent !== null);"
        "return e ? e.getAttribute('data-image-id') : null;"
    )


def test_dashboard_scatter_has_a_point_per_image_and_a_click_opens_the_detail(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *PHOTOS[:4])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 4)
    order = [e.get_attribute("data-image-id") for e in driver.find_elements(By.CSS_SELECTOR, ".dr-card")]
    click_tab(driver, "Dashboard")
    wait_for(driver, lambda d: "every feature computed" in d.page_source, timeout=90)
    points = wait_for(driver, lambda d: (p := scatter_points(d)) and len(p) == 4 and p, timeout=20)
    assert sorted(p["id"] for p in points) == sorted(order)
    tooltip = driver.execute_script(
        """
        const chart = getElement(document.querySelector('[data-testid=scatter]')).chart;
        const series = chart.getOption().series.find(s => s.data.length);
        return chart.getOption().tooltip[0].formatter({ data: series.data[0], value: series.data[0].value });
        """
    )
    assert '<img src="/_darkroom/thumbnail/' in tooltip  # the thumbnail in the tooltip
    chart = driver.find_element(By.CSS_SELECTOR, "[data-testid=scatter]")
    size = chart.size
    target = points[0]
    ActionChains(driver).move_to_element_with_offset(
        chart, round(target["x"] - size["width"] / 2), round(target["y"] - size["height"] / 2)
    ).click().perform()
    wait_for(driver, lambda d: detail_shows(d) == target["id"], message="the point did not open its image")

    # ←/→ move through the images (in gallery order), Esc closes
    start = order.index(target["id"])
    ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
    following = order[(start + 1) % len(order)]
    wait_for(driver, lambda d: detail_shows(d) == following, message="→ did not move to the next image")
    ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()
    wait_for(driver, lambda d: detail_shows(d) == target["id"], message="← did not move back")
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_for(driver, lambda d: detail_shows(d) is None, message="Esc did not close the detail")


def test_with_websockets_blocked_the_page_falls_back_to_http(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=BLOCK_UPLOAD_SOCKETS)
    choose_files(driver, *PHOTOS[:3])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3, message="the HTTP fallback did not upload")
    assert filenames(driver) == sorted(p.name for p in PHOTOS[:3])
    assert driver.execute_script(HTTP_UPLOADS) >= 1


def test_over_the_http_fallback_each_file_gets_its_own_outcome_by_the_servers_names(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=BLOCK_UPLOAD_SOCKETS)
    long_name = "x" * 220 + ".jpg"  # the server keeps it cut to 200 characters: the tile still gets its outcome
    choose_files(driver, DATA / "hostile" / "truncated.jpg", write(tmp_path, long_name, make_jpeg(seed=44)))
    tile = ".dr-pending-tile.dr-failed[data-name='truncated.jpg']"
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, tile), message="no refusal on the tile")
    assert "the JPEG data is corrupt" in driver.find_element(By.CSS_SELECTOR, tile).text
    wait_for(driver, lambda d: loaded_thumbnails(d) == 1, message="the long-named file was not stored")
    assert driver.execute_script(HTTP_UPLOADS) >= 1
    stuck = f".dr-pending-tile[data-name='{long_name}']:not(.dr-done)"
    wait_for(
        driver, lambda d: not d.find_elements(By.CSS_SELECTOR, stuck), message="the long name's tile did not settle"
    )


def card_names(driver: Any) -> list[str]:
    """The names on the cards the gallery shows, in order (hidden cards left out)."""
    return [
        e.get_attribute("title")
        for e in driver.find_elements(By.CSS_SELECTOR, ".dr-card [data-testid=card-name]")
        if e.is_displayed()
    ]


def stars_of(driver: Any, name: str) -> int:
    card = f".dr-card:has([data-testid=card-name][title='{name}'])"
    return len(driver.find_elements(By.CSS_SELECTOR, f"{card} [data-testid=card-rating] .dr-star-on"))


def test_gallery_cards_follow_every_change(server, browser, tmp_path) -> None:
    """The gallery component draws a card again only when its record changed: a change inside a
    card, a hidden card, a deleted card and a new card must all still show."""
    driver = browser()
    open_workspace(driver, server.url)
    photos = [write(tmp_path, f"card-{n}.jpg", make_jpeg(seed=60 + n)) for n in range(3)]
    choose_files(driver, *photos)
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3)
    assert sorted(card_names(driver)) == ["card-0.jpg", "card-1.jpg", "card-2.jpg"]

    # A change inside one card (its rating) after the others were added.
    star = ".dr-card:has([title='card-1.jpg']) [data-testid=card-rating] .dr-star"
    driver.execute_script("arguments[0].click()", driver.find_elements(By.CSS_SELECTOR, star)[3])
    wait_for(driver, lambda d: stars_of(d, "card-1.jpg") == 4, message="the rating did not show")
    assert stars_of(driver, "card-0.jpg") == 0 and stars_of(driver, "card-2.jpg") == 0

    # The rating filter hides the other cards (each hidden card is a changed element) and shows them again.
    driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, "[data-testid=filter-rating]"))
    option = "//div[contains(@class, 'q-item')][.//span[normalize-space()='★★★★ or more']]"
    driver.execute_script("arguments[0].click()", wait_for(driver, lambda d: d.find_elements(By.XPATH, option))[0])
    wait_for(driver, lambda d: card_names(d) == ["card-1.jpg"], message="the filter did not hide the cards")
    driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, "[data-testid=filter-rating]"))
    option = "//div[contains(@class, 'q-item')][.//span[normalize-space()='Any rating']]"
    driver.execute_script("arguments[0].click()", wait_for(driver, lambda d: d.find_elements(By.XPATH, option))[0])
    wait_for(driver, lambda d: len(card_names(d)) == 3, message="the cards did not come back")

    # A deleted card goes, a new card comes, and the others keep their own content.
    delete = ".dr-card:has([title='card-0.jpg']) button[title='Delete this image']"
    driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, delete))
    wait_for(driver, lambda d: sorted(card_names(d)) == ["card-1.jpg", "card-2.jpg"], message="not deleted")
    choose_files(driver, write(tmp_path, "card-3.jpg", make_jpeg(seed=70)))
    wait_for(driver, lambda d: sorted(card_names(d)) == ["card-1.jpg", "card-2.jpg", "card-3.jpg"])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3)
    assert stars_of(driver, "card-1.jpg") == 4 and stars_of(driver, "card-3.jpg") == 0


# Records every message the upload worker sends the page.
WORKER_MESSAGES = """
window.__fromWorker = [];
window.Worker = class extends window.Worker {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (event) => window.__fromWorker.push(event.data));
  }
};
"""


def focused_card(driver: Any) -> str | None:
    return driver.execute_script(
        "const e = document.querySelector('.dr-card.dr-focused [data-testid=card-name]');"
        "return e ? e.getAttribute('title') : null;"
    )


def selected_cards(driver: Any) -> list[str]:
    return sorted(
        e.get_attribute("title")
        for e in driver.find_elements(By.CSS_SELECTOR, ".dr-card.dr-selected [data-testid=card-name]")
    )


def test_the_gallery_is_one_component_with_no_nicegui_element_per_card(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *[write(tmp_path, f"one-{n}.jpg", make_jpeg(seed=80 + n)) for n in range(4)])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 4)
    # NiceGUI gives each of its elements a DOM id "c<number>": the cards have none of them.
    inside = driver.execute_script(
        "return [...document.querySelectorAll('.dr-gallery [id]')].filter(e => /^c[0-9]+$/.test(e.id)).length"
    )
    assert inside == 0 and len(driver.find_elements(By.CSS_SELECTOR, ".dr-gallery > .dr-card")) == 4


def test_keyboard_moves_rates_selects_and_opens_cards(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *[write(tmp_path, f"key-{n}.jpg", make_jpeg(seed=90 + n)) for n in range(3)])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3)
    shown = card_names(driver)  # in the order the files were stored
    grid = driver.find_element(By.CSS_SELECTOR, ".dr-gallery")
    driver.execute_script("arguments[0].focus()", grid)
    keys = ActionChains(driver)
    keys.send_keys(Keys.ARROW_RIGHT).perform()  # nothing focused yet: the first card
    wait_for(driver, lambda d: focused_card(d) == shown[0], message="the first card did not take the focus")
    keys.send_keys(Keys.ARROW_RIGHT).perform()
    wait_for(driver, lambda d: focused_card(d) == shown[1])
    keys.send_keys("4").perform()  # rates the focused card, for everyone
    wait_for(driver, lambda d: stars_of(d, shown[1]) == 4, message="the digit did not rate the card")
    assert stars_of(driver, shown[0]) == 0
    keys.send_keys(" ").perform()
    keys.send_keys(Keys.ARROW_LEFT).perform()
    keys.send_keys(" ").perform()
    wait_for(driver, lambda d: selected_cards(d) == sorted(shown[:2]), message="space did not select")
    wait_for(driver, lambda d: "2 selected" in d.find_element(By.CSS_SELECTOR, "[data-testid=selection-count]").text)
    keys.send_keys(Keys.ESCAPE).perform()
    wait_for(driver, lambda d: selected_cards(d) == [], message="escape did not clear the selection")
    first = driver.find_element(By.CSS_SELECTOR, f".dr-card:has([title='{shown[0]}'])").get_attribute("data-image-id")
    keys.send_keys(Keys.ENTER).perform()
    wait_for(driver, lambda d: detail_shows(d) == first, message="enter did not open the detail")


def test_selected_cards_are_deleted_together_after_a_confirmation(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    choose_files(driver, *[write(tmp_path, f"sel-{n}.jpg", make_jpeg(seed=100 + n)) for n in range(4)])
    wait_for(driver, lambda d: loaded_thumbnails(d) == 4)

    def click(name: str, **keys: bool) -> None:  # on its name: a click on the thumbnail opens the detail
        name_of = driver.find_element(By.CSS_SELECTOR, f".dr-card [data-testid=card-name][title='{name}']")
        driver.execute_script(
            "arguments[0].dispatchEvent(new MouseEvent('click', Object.assign({bubbles: true}, arguments[1])))",
            name_of,
            keys,
        )

    shown = card_names(driver)  # in the order the files landed
    click(shown[0])
    click(shown[2], shiftKey=True)
    wait_for(driver, lambda d: selected_cards(d) == sorted(shown[:3]), message="shift-click did not select a range")
    click(shown[1], ctrlKey=True)
    wait_for(driver, lambda d: selected_cards(d) == sorted([shown[0], shown[2]]), message="ctrl-click did not toggle")
    driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, "[data-testid=delete-selected]"))
    confirm = "//button[.//span[normalize-space()='Delete']]"
    driver.execute_script("arguments[0].click()", wait_for(driver, lambda d: d.find_elements(By.XPATH, confirm))[0])
    wait_for(driver, lambda d: card_names(d) == [shown[1], shown[3]], message="the selected cards were not deleted")
    wait_for(driver, lambda d: not d.find_element(By.CSS_SELECTOR, "[data-testid=selection-count]").is_displayed())


def test_a_zip_and_a_loose_file_of_the_same_name_each_get_their_own_verdicts(server, browser, tmp_path) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=WORKER_MESSAGES)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.jpg", make_jpeg(seed=81))  # the loose file's name, other bytes
        zf.writestr("b.jpg", make_jpeg(seed=82))
    loose = write(tmp_path, "a.jpg", make_jpeg(seed=80))
    choose_files(driver, loose, write(tmp_path, "photos.zip", archive.getvalue()))
    wait_for(driver, lambda d: loaded_thumbnails(d) == 3, message="the archive's images did not all arrive")
    assert filenames(driver) == ["a.jpg", "a.jpg", "b.jpg"]
    messages = driver.execute_script("return window.__fromWorker")
    loose_id, zip_id = [m["id"] for m in messages if m["type"] == "uploading"]
    members = [m["id"] for m in messages if m["type"] == "member"]
    verdicts = {m["id"]: m["status"] for m in messages if m["type"] == "verdict"}
    assert members == [zip_id, zip_id], messages  # both members count for the archive's tile
    assert verdicts == {loose_id: 200, zip_id: 200}, messages


# Records what the page hands its upload worker: per message, its type, how many files and "more".
TO_WORKER = """
window.__toWorker = [];
const __realPost = window.Worker.prototype.postMessage;
window.Worker.prototype.postMessage = function (message, ...rest) {
  if (message && (message.type === 'batch' || message.type === 'more')) {
    const { type, batch, files, more } = message;
    window.__toWorker.push({ type, batch, files: files.length, more });
  }
  return __realPost.call(this, message, ...rest);
};
"""


def test_a_big_drop_is_handed_to_the_upload_worker_a_slice_at_a_time_and_all_of_it_is_stored(
    server, browser, tmp_path
) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=WORKER_MESSAGES + TO_WORKER)
    photos = [write(tmp_path, f"many-{n:02}.jpg", make_jpeg(24, 16, seed=300 + n)) for n in range(70)]
    choose_files(driver, *photos)
    wait_for(driver, lambda d: loaded_thumbnails(d) == 70, timeout=30, message="the drop was not all stored")
    assert filenames(driver) == [p.name for p in photos]
    handed = driver.execute_script("return window.__toWorker")
    assert [(m["type"], m["files"], m["more"]) for m in handed] == [
        ("batch", 20, True), ("more", 40, True), ("more", 10, False)
    ], handed  # fmt: skip
    assert len({m["batch"] for m in handed}) == 1
    sized = [
        entry
        for m in driver.execute_script("return window.__fromWorker")
        if m["type"] == "sizes"
        for entry in m["sizes"]
    ]
    assert sorted(size for _, size, _ in sized) == sorted(p.stat().st_size for p in photos)  # each slice's sizes
    assert not any(held for _, _, held in sized)


def test_the_page_loads_no_tailwind_runtime_and_its_utility_classes_still_apply(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url)
    assert not driver.execute_script("return [...document.scripts].some(s => s.src.includes('tailwind'))")
    styles = driver.execute_script("""
      const row = document.querySelector('.nicegui-row.items-center.gap-2');
      const style = getComputedStyle(row);
      return [style.alignItems, style.rowGap, getComputedStyle(document.querySelector('.text-sm')).fontSize];
    """)
    assert styles == ["center", "8px", "14px"]  # beats NiceGUI's rows (align-items: flex-start; gap: 1rem)


# Records each local preview as it loads: its tile's name, where it came from (the EXIF thumbnail or
# a decode), its size as shown and the colour at its centre.
PREVIEWS = """
window.__previews = [];
document.addEventListener('load', (event) => {
  const img = event.target;
  if (!(img.matches && img.matches('img.dr-local-preview'))) return;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const centre = context.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
  window.__previews.push({ name: img.closest('[data-name]').dataset.name, source: img.dataset.preview,
                           width: img.naturalWidth, height: img.naturalHeight, pixel: [...centre.slice(0, 3)] });
}, true);
"""
PHOTO_RED, THUMBNAIL_BLUE = (220, 30, 30), (20, 40, 230)


@pytest.mark.parametrize(("orientation", "order", "shown"), [(1, "<", (160, 120)), (6, ">", (120, 160))])
def test_a_photo_with_an_embedded_exif_thumbnail_is_previewed_from_it(
    server, browser, tmp_path, orientation, order, shown
) -> None:
    photo = jpeg_with_exif_thumbnail(
        Image.new("RGB", (1200, 800), PHOTO_RED), Image.new("RGB", (160, 120), THUMBNAIL_BLUE), orientation, order
    )
    with Image.open(io.BytesIO(photo)) as opened:  # what cameras write, as Pillow reads it
        exif = opened.getexif()
        assert exif[0x0112] == orientation and exif.get_ifd(ExifTags.IFD.IFD1)[0x0202] > 0
    driver = browser()
    open_workspace(driver, server.url, before_load=PREVIEWS)
    choose_files(driver, write(tmp_path, "camera.jpg", photo))
    wait_for(driver, lambda d: loaded_thumbnails(d) == 1, message="the photo did not arrive")
    (preview,) = driver.execute_script("return window.__previews")
    assert (preview["name"], preview["source"]) == ("camera.jpg", "embedded")
    assert (preview["width"], preview["height"]) == shown  # the thumbnail, turned as the photo is
    assert all(abs(got - want) < 40 for got, want in zip(preview["pixel"], THUMBNAIL_BLUE, strict=True)), preview


def test_a_photo_without_an_embedded_thumbnail_is_previewed_from_a_decode(server, browser) -> None:
    driver = browser()
    open_workspace(driver, server.url, before_load=PREVIEWS + SLOW_UPLOAD_SOCKETS)
    choose_files(driver, *PHOTOS)
    wait_for(driver, lambda d: loaded_thumbnails(d) == len(PHOTOS), message="thumbnails did not appear")
    previews = driver.execute_script("return window.__previews")
    assert previews and {preview["source"] for preview in previews} == {"decoded"}, previews


def test_the_drop_zone_writes_sizes_as_the_servers_messages_do(server, browser) -> None:
    sizes = [0, 1, 1023, 1024, 1280, 1536, 1587, 10_239, 1_048_575, 26_214_400, 5 * 2**40, 3 * 2**50]
    driver = browser()
    open_workspace(driver, server.url)
    written = driver.execute_script(
        "const zone = getElement(document.querySelector('.dr-dropzone'));"
        "return arguments[0].map((size) => zone.formatBytes(size));",
        sizes,
    )
    assert written == [format_bytes(size) for size in sizes]
