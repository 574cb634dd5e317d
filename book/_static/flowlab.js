/* flowlab course book: small, dependency-free enhancements (loaded on every page).
 *
 * 1. Click to enlarge.  book/_ext/flowlab_book.py wraps every figure in
 *    <a class="flowlab-zoom" href="the.png">.  A click opens the image in a modal <dialog>
 *    (up to twice its natural size, scrollable on a phone); Escape, the Close button or a click
 *    on the backdrop closes it and focus returns to the figure.  Without JavaScript the link
 *    opens the PNG itself.
 * 2. Display equations that are wider than the column (phones) are set in a smaller font,
 *    down to 75 % of the text size; tests/book/test_site.py checks that none still overflows.
 * 3. Controls whose aria-label differs from their visible text are named by that text.
 * 4. Search snippets without LaTeX: the maths (.math elements) of the pages the search fetches
 *    is written as plain text (T < 1, log|det Df|, α) before Sphinx cuts a snippet from them.
 * 5. Figures legible as seen: a figure whose smallest text (data-font-px, at natural size)
 *    would be shown below 11 CSS px in a narrow column is shown wider, and scrolls sideways
 *    inside its output box (the page itself never gets wider).
 * 6. Inline formulas wider than their line are set in a smaller font, down to 75 %.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ 1. enlarge figures
  let dialog = null;
  function openZoom(link) {
    const small = link.querySelector("img");
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.className = "flowlab-lightbox";
      dialog.setAttribute("aria-label", "Enlarged figure");
      const close = document.createElement("button");
      close.type = "button";
      close.className = "flowlab-lightbox-close";
      close.textContent = "Close";
      close.addEventListener("click", () => dialog.close());
      const img = document.createElement("img");
      dialog.append(close, img);
      dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
      dialog.addEventListener("close", () => { if (dialog.opener) dialog.opener.focus(); });
      document.body.append(dialog);
    }
    const img = dialog.querySelector("img");
    img.src = link.getAttribute("href");
    img.alt = small ? small.alt : "";
    const natural = small && small.naturalWidth ? small.naturalWidth : 600;
    img.style.width = Math.max(natural, Math.min(window.innerWidth * 0.94, 2 * natural)) + "px";
    dialog.opener = link;
    dialog.showModal();
  }
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest("a.flowlab-zoom");
    if (!link || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    openZoom(link);
  });

  // ------------------------------------------------------------------ 2. fit equations
  function fitEquations() {
    document.querySelectorAll('mjx-container[display="true"]').forEach((eq) => {
      eq.style.fontSize = "";
      let scale = 100;
      while (eq.scrollWidth > eq.clientWidth + 1 && scale > 75) {
        scale -= 5;
        eq.style.fontSize = scale + "%";
      }
    });
    // 6. inline formulas: as wide as the text column at most
    document.querySelectorAll('mjx-container:not([display="true"])').forEach((eq) => {
      eq.style.fontSize = "";
      const column = eq.closest("p, li, dd, td, div") || eq.parentElement;
      const room = column.clientWidth;
      let scale = 100;
      while (eq.getBoundingClientRect().width > room + 1 && scale > 75) {
        scale -= 5;
        eq.style.fontSize = scale + "%";
      }
    });
  }
  function whenTypeset() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(fitEquations);
    }
  }
  window.addEventListener("load", whenTypeset);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(fitEquations, 150);
  });
  window.flowlabFitEquations = fitEquations;   // for the tests (after a viewport change)

  // ------------------------------------------------------------------ 3. accessible names
  // The theme's search button ("Search Ctrl+K"), colour-mode button and the code-cell toggles
  // ("Show code cell source") carry an aria-label that differs from the text they show, so a
  // speech-input user who says what they see cannot activate them (WCAG 2.5.3, axe-core
  // "label-content-name-mismatch").  Name them by their visible text.
  function nameByVisibleText() {
    // Icons inside a labelled control are decorative: their title ("Light", "Dark", "System
    // Settings" on the colour-mode button) is not the control's name.
    // (Font Awesome replaces each <i> by an <svg role="img"> with a <title>, when it likes.)
    document.querySelectorAll("button[aria-label] :is(i, svg), a[aria-label] :is(i, svg)")
      .forEach((icon) => {
        if (icon.getAttribute("aria-hidden") !== "true") icon.setAttribute("aria-hidden", "true");
        // An icon's <title> still counts as visible text of the control for axe-core.
        icon.querySelectorAll("title").forEach((t) => t.remove());
        icon.removeAttribute("aria-labelledby");
        icon.removeAttribute("title");
      });
    document.querySelectorAll("button[aria-label], summary[aria-label], a[aria-label]")
      .forEach((el) => {
        const text = (el.innerText || "").replace(/\s+/g, " ").trim();
        const label = el.getAttribute("aria-label") || "";
        if (text && !label.toLowerCase().includes(text.toLowerCase())) {
          el.setAttribute("aria-label", text);
        }
      });
  }
  let nameTimer = null;
  window.addEventListener("load", () => {
    nameByVisibleText();
    new MutationObserver(() => {
      clearTimeout(nameTimer);
      nameTimer = setTimeout(nameByVisibleText, 30);
    }).observe(document.body, {childList: true, subtree: true});
  });
  window.flowlabNameByVisibleText = nameByVisibleText;

  // ------------------------------------------------------------------ 4. search snippets
  const GREEK = {alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε",
    theta: "θ", lambda: "λ", mu: "μ", pi: "π", sigma: "σ", tau: "τ", phi: "φ", varphi: "φ",
    psi: "ψ", omega: "ω", Sigma: "Σ", Delta: "Δ", Omega: "Ω", Phi: "Φ", nabla: "∇",
    partial: "∂", infty: "∞", le: "≤", leq: "≤", ge: "≥", geq: "≥", neq: "≠", approx: "≈",
    sim: "~", in: "∈", to: "→", rightarrow: "→", mapsto: "↦", longrightarrow: "→",
    times: "×", cdot: "·", odot: "⊙", circ: "∘", dots: "…", ldots: "…", cdots: "…",
    sum: "Σ", prod: "Π", int: "∫", mid: "|", lvert: "|", rvert: "|", vert: "|",
    lVert: "‖", rVert: "‖", langle: "⟨", rangle: "⟩"};
  function texToText(tex) {
    let t = tex.replace(/^\s*(\\\(|\\\[|\$\$?)/, "").replace(/(\\\)|\\\]|\$\$?)\s*$/, "");
    t = t.replace(/\\(left|right|big|Big|bigg|Bigg|bigl|bigr|Bigl|Bigr)\b/g, "");
    for (let i = 0; i < 3; i++) {
      t = t.replace(/\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}/g, "($1)/($2)")
           .replace(/\\sqrt\{([^{}]*)\}/g, "√($1)")
           .replace(/\\(?:mathcal|mathbb|mathrm|mathbf|boldsymbol|operatorname|text|textrm|mathit|hat|tilde|bar|overline)\{([^{}]*)\}/g, "$1");
    }
    t = t.replace(/\\([A-Za-z]+)/g, (m, name) => GREEK[name] || name)
         .replace(/\\[,;:! ]/g, " ").replace(/\\\\/g, " ").replace(/&/g, " ")
         .replace(/[{}]/g, "").replace(/\s+/g, " ").trim();
    return t;
  }
  window.flowlabTexToText = texToText;   // for the tests
  document.addEventListener("DOMContentLoaded", () => {
    if (typeof Search === "undefined" || !Search.htmlToText) return;
    const original = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math, mjx-container").forEach((el) => {
        el.replaceWith(" " + texToText(el.textContent || "") + " ");
      });
      return original(doc.documentElement.outerHTML, anchor);
    };
  });

  // ------------------------------------------------------------------ 5. legible figures
  const MIN_FIGURE_PX = 11;
  function fitFigures() {
    document.querySelectorAll("img[data-font-px]").forEach((img) => {
      img.style.width = "";
      img.style.maxWidth = "";
      const font = parseFloat(img.dataset.fontPx);
      const shown = img.getBoundingClientRect().width;
      if (!font || !img.naturalWidth || !shown) return;
      if (shown / img.naturalWidth * font >= MIN_FIGURE_PX) return;
      const box = img.closest(".cell_output, .output, .animation, figure") || img.parentElement;
      box.classList.add("flowlab-wide");
      img.style.maxWidth = "none";
      img.style.width = Math.ceil(img.naturalWidth * MIN_FIGURE_PX / font) + "px";
    });
  }
  window.flowlabFitFigures = fitFigures;
  window.addEventListener("load", fitFigures);
  window.addEventListener("resize", () => setTimeout(fitFigures, 150));
  document.addEventListener("load", (e) => {
    if (e.target && e.target.tagName === "IMG" && e.target.dataset.fontPx) fitFigures();
  }, true);
})();
