// anywidget glue for the shared trace component (core/figures/trace_view.js, whose draw()
// precedes this text in the widget's module): the widget's `data` trait is the payload of
// core.figures.trace, its `selected` trait the clicked position. A click sets `selected`
// (synced to Python where a kernel is) and redraws with the new outline and top-k panel.
function render({ model, el }) {
  let scroll = true;  // centre a preselected token once, not on every click
  const paint = () => {
    // a dark notebook theme (JupyterLab, VS Code) is read off its page colour, the way the
    // app reads Streamlit's: draw() looks at --st-background-color (read at every paint:
    // el may not be in the page yet at the first)
    const style = getComputedStyle(el);
    const page = ["--jp-layout-color0", "--vscode-editor-background"]
      .map((name) => style.getPropertyValue(name).trim()).find((v) => v);
    if (page) el.style.setProperty("--st-background-color", page);
    draw({
      data: { ...model.get("data"), selected: model.get("selected"), scroll },
      parentElement: el,
      setTriggerValue: (name, value) => {
        if (name !== "clicked") return;
        scroll = false;
        model.set("selected", value);
        model.save_changes();
      },
    });
  };
  model.on("change:selected", paint);
  model.on("change:data", paint);
  paint();
  return () => {
    model.off("change:selected", paint);
    model.off("change:data", paint);
  };
}

export default { render };
