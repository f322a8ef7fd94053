// Gallery cards are rendered once, not once per card added. NiceGUI renders every element from the
// root with slot functions Vue cannot tell apart from new ones, so each time the gallery grid
// changes (one card in, one card out) Vue re-rendered every card's Quasar components: adding n
// cards one by one cost O(n^2) renders, and a drop of a few hundred photos held the page's main
// thread for seconds. This wraps NiceGUI's renderRecursively: an element with the class "dr-memo"
// (a component, such as a q-card) whose element object has not changed since its last render gets
// the same vnode back, marked as memoized, so Vue skips it. NiceGUI replaces an element's object on
// every change of it, and what happens inside the card is still rendered by the card's own
// component, which tracks its own elements. The page runs this with ui.run_javascript once it is
// connected (NiceGUI's scripts have declared renderRecursively by then; a script added with
// add_body_html after the page's response is built would be inserted as HTML and never run).
const install = () => {
  const render = window.renderRecursively;
  if (render !== undefined && render.memoized) return;
  if (typeof render !== "function") {
    // NiceGUI no longer declares the function this wraps: the cards still render, one by one
    // again. Say so loudly; tests/test_browser_page.py fails on it.
    console.error("Darkroom memo.js: NiceGUI has no window.renderRecursively; gallery cards are not memoized");
    return;
  }
  const rendered = new WeakMap(); // element object -> its vnode
  const memoized = function (elements, id, propsContext) {
    const element = elements[id];
    // Only a component, outside scoped slots: a native element's children are built into its own
    // vnode (a reused one would hide their changes). A dr-memo element must not be moved, nor
    // carry ":" expressions or a loopback=False value, which change without a new element object.
    if (
      element === undefined ||
      propsContext !== undefined ||
      !element.class.includes("dr-memo") ||
      (typeof app !== "undefined" && app.config.isNativeTag(element.tag))
    ) {
      return render(elements, id, propsContext);
    }
    let vnode = rendered.get(element);
    if (vnode === undefined) {
      vnode = render(elements, id, propsContext);
      vnode.memo = [element]; // Vue's v-memo marker: a mounted vnode is reused, not cloned
      rendered.set(element, vnode);
    }
    return vnode;
  };
  memoized.memoized = true;
  window.renderRecursively = memoized;
};
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
else install();
