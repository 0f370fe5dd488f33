// Every piece of text the page shows, with its contrast ratio (WCAG 2.x) against what is painted behind it,
// from computed styles: the colour (or an SVG text's fill) over the element's and its ancestors' background
// colours composited down to the canvas, each faded by the ancestors' opacity. Run by page.evaluate; returns
// {checked: [selector, ...], failing: [{text, ratio, fg, bg}, ...]} for ratios below the given minimum.
(minimum) => {
  const canvas = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
  // Any CSS colour (rgb, hex, oklch, color-mix results) as [r, g, b, alpha 0..1], painted by the browser itself.
  const rgba = (css) => {
    canvas.clearRect(0, 0, 1, 1);
    canvas.fillStyle = "rgba(0, 0, 0, 0)";
    canvas.fillStyle = css;
    canvas.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = canvas.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = ([r, g, b, a], [R, G, B]) => [r * a + R * (1 - a), g * a + G * (1 - a), b * a + B * (1 - a)];
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((v) => v / 255).map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const root = document.documentElement;
  // The canvas behind everything: the browser paints it dark only under a dark color-scheme.
  const base = getComputedStyle(root).colorScheme.includes("dark") && !getComputedStyle(root).colorScheme.includes("light")
    ? [18, 18, 18] : [255, 255, 255];
  const background = (el) => {
    const layers = [];
    for (let node = el; node instanceof Element; node = node.parentElement) {
      const colour = rgba(getComputedStyle(node).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] === 1) break;
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), base);
  };
  const opacity = (el) => {
    let product = 1;
    for (let node = el; node instanceof Element; node = node.parentElement) product *= Number(getComputedStyle(node).opacity);
    return product;
  };
  const skipped = "script, style, title, desc, option, template, noscript";
  const checked = [];
  const failing = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el.matches(skipped) || el.closest(":disabled")) continue;
    const text = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join("").trim();
    if (!text || !el.checkVisibility({ checkVisibilityCSS: true, visibilityProperty: true, contentVisibilityAuto: true })) continue;
    const style = getComputedStyle(el);
    const colour = rgba(el instanceof SVGElement ? style.fill : style.color);
    colour[3] *= opacity(el);
    const behind = background(el);
    const fg = over(colour, behind);
    const value = ratio(fg, behind);
    checked.push(el.tagName.toLowerCase() + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : ""));
    if (value < minimum) failing.push({ text: text.slice(0, 60), ratio: Math.round(value * 100) / 100, fg: fg.map(Math.round), bg: behind.map(Math.round) });
  }
  return { checked, failing };
}
