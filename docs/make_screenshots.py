"""Take the screenshots of docs/usage.md: the correct-and-retrain loop in napari, step by step.

Run it on a desktop, or headless under Xvfb (the project's test set-up has it)::

    xvfb-run -a .venv/bin/python docs/make_screenshots.py [--model MODEL.safetensors]

Every picture is ``viewer.screenshot(canvas_only=False)`` of the real napari window with the dock
widget, after the real action (segmenting, marking, exporting, training runs in the background).

No segmentation model is bundled with this version, so without ``--model`` the script first trains
a small starter model (``bootstrap_model``): from scratch, on the MoNuSeg training images and masks
when ``../shared/data/monuseg`` is present, else on the bundled sample with a colour-threshold
pseudo-mask. It is a demonstration model for the pictures, not a benchmark.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGES = Path(__file__).resolve().parent / "images"
MONUSEG_TRAIN = ROOT.parent / "shared" / "data" / "monuseg" / "train"


def bootstrap_model(out_dir: str | Path, steps: int = 300) -> Path:
    """Train a small nucleus model from scratch (headless, on the CPU) and return its file."""
    from napari_genselfdiff.core.network import UNetConfig
    from napari_genselfdiff.core.progress import Returning
    from napari_genselfdiff.plugin._threading import configure_torch_threads

    configure_torch_threads()  # one thread per spare core: oversubscribed cores train several times slower
    from napari_genselfdiff.core.training import FinetuneConfig, finetune

    arch = UNetConfig(widths=(16, 32, 64, 128), attention_dim_head=16, level_attention=False)
    if (MONUSEG_TRAIN / "images").is_dir():
        data = {"images": str(MONUSEG_TRAIN / "images"), "masks": str(MONUSEG_TRAIN / "masks")}
    else:
        from napari_genselfdiff.core.io.read import read_array
        from napari_genselfdiff.plugin._sample_data import SAMPLE

        rgb = read_array(SAMPLE)[..., :3]
        data = {"pairs": [("sample", rgb, (rgb.mean(-1) < 120).astype(np.uint8))]}
    cfg = FinetuneConfig(
        **data, out_dir=str(out_dir), init="scratch", arch=arch, classes=["background", "nucleus"], steps=steps,
        batch=4, patch_size=128, stride=64, lr=1e-3, val_fraction=0.0, checkpoint_every=0, device="cpu",
    )
    events = Returning(finetune(cfg))
    for event in events:
        if event.kind == "step" and event.step % 25 == 0:
            print(event.describe(), flush=True)
    return Path(events.value)


def _wait(condition, timeout_s: float = 1200.0) -> None:
    from napari_genselfdiff.plugin._testing import wait_for

    wait_for(condition, timeout_s)


def _settle(ms: int = 400) -> None:
    from qtpy.QtTest import QTest

    QTest.qWait(ms)


def _shot(viewer, name: str) -> Path:
    import imageio.v3 as iio

    _settle()
    path = IMAGES / name
    iio.imwrite(path, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {path}", flush=True)
    return path


def _steps(run) -> int:
    return max([e.step for e in run.events if e.kind == "step"], default=0)


def default_model_shots() -> int:
    """The bundled default model, chosen and run on the sample: what a new user sees first."""
    work = Path(tempfile.mkdtemp(prefix="genselfdiff-docs-"))
    os.environ["GENSELFDIFF_CONFIG_DIR"] = str(work / "config")
    os.environ["GENSELFDIFF_DATA_DIR"] = str(work / "data")
    IMAGES.mkdir(parents=True, exist_ok=True)
    import napari

    from napari_genselfdiff.core.model_files import bundled_model_path
    from napari_genselfdiff.plugin._testing import open_widget

    viewer = napari.Viewer(title="napari-genselfdiff")
    viewer.window._qt_window.resize(1500, 950)
    widget = open_widget(viewer)
    _settle(800)
    image = viewer.open_sample("napari-genselfdiff", "he_nuclei")[0]
    widget.model_panel.load(bundled_model_path())
    _shot(viewer, "11_default_model.png")
    panel = widget.segment_panel
    panel._instances.setChecked(True)
    panel.run()
    _wait(lambda: not widget.state.running("segment"))
    viewer.layers[f"{image.name} labels"].contour = 0
    _shot(viewer, "12_default_segmented.png")
    viewer.close()
    return 0


def gland_shots(name: str = "testB_1") -> int:
    """The bundled gland model chosen by its name in the Model panel and run on the first image of GlaS's
    testB (malignant; never trained on) (18_glands.png): glands as labels, touching glands apart in the
    `<image> glands` instances layer."""
    work = Path(tempfile.mkdtemp(prefix="genselfdiff-docs-"))
    os.environ["GENSELFDIFF_CONFIG_DIR"] = str(work / "config")
    os.environ["GENSELFDIFF_DATA_DIR"] = str(work / "data")
    image_path = ROOT.parent / "shared" / "data" / "glas" / "images" / f"{name}.jpg"
    if not image_path.is_file():
        print(f"error: {image_path} not found (the shared data folder is absent).", flush=True)
        return 2
    IMAGES.mkdir(parents=True, exist_ok=True)
    import napari

    from napari_genselfdiff.core.model_files import bundled_model_path
    from napari_genselfdiff.plugin._testing import open_widget

    viewer = napari.Viewer(title="napari-genselfdiff")
    viewer.window._qt_window.resize(1500, 950)
    widget = open_widget(viewer)
    _settle(800)
    image = viewer.open(image_path, plugin="napari-genselfdiff")[0]
    widget.model_panel.load(bundled_model_path("glands"))
    panel = widget.segment_panel
    panel._instances.setChecked(True)
    panel.run()
    _wait(lambda: not widget.state.running("segment"))
    for layer in viewer.layers:  # the glands filled, one colour each; the class labels hidden below them
        if layer.name.startswith(image.name) and layer._type_string == "labels":
            layer.contour, layer.opacity = 0, 0.45
            layer.visible = layer.name != f"{image.name} labels"
    viewer.reset_view()
    _shot(viewer, "18_glands.png")
    print(panel.status_text() if hasattr(panel, "status_text") else "", flush=True)
    viewer.close()
    return 0


def slide_shots(size: tuple[int, int] = (6144, 8192)) -> int:
    """The slide workflow (13-16_slide_*.png): a synthetic pyramidal slide opened as a multiscale layer,
    a drawn rectangle segmented with the bundled model into a labels store, the nuclei GeoJSON drawn
    over it, and a correction painted and saved back into the store."""
    work = Path(tempfile.mkdtemp(prefix="genselfdiff-docs-"))
    os.environ["GENSELFDIFF_CONFIG_DIR"] = str(work / "config")
    os.environ["GENSELFDIFF_DATA_DIR"] = str(work / "data")
    IMAGES.mkdir(parents=True, exist_ok=True)
    import json

    import napari

    from napari_genselfdiff.core.io.labels_store import open_labels_store
    from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide
    from napari_genselfdiff.core.model_files import bundled_model_path
    from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget

    slide = write_synthetic_slide(work / "demo_slide.svs", *size, mpp=0.25, tissue_fraction=0.35, seed=7)
    print(f"wrote {slide.path} ({slide.width} x {slide.height}, levels {slide.levels})", flush=True)
    viewer = napari.Viewer(title="napari-genselfdiff")
    viewer.window._qt_window.resize(1500, 950)
    widget = SlideSegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GenSelfDiff slide segmentation", area="right")
    [image] = viewer.open(str(slide.path), plugin="napari-genselfdiff")
    viewer.canvas.overlays.scale_bar.visible = True
    # A 1200 x 800 rectangle at a tissue edge (about 70 % tissue by the tissue mask), in world units (um).
    from scipy import ndimage

    from napari_genselfdiff.core.io.slide import Slide
    from napari_genselfdiff.core.tissue import tissue_mask

    with Slide(slide.path) as opened:
        mask = tissue_mask(opened)
    ds, (bw, bh) = mask.downsample, (1200, 800)
    share = ndimage.uniform_filter(mask.mask.astype(np.float32), size=(round(bh / ds), round(bw / ds)))
    margin = np.zeros_like(share, bool)
    margin[round(bh / ds):-round(bh / ds), round(bw / ds):-round(bw / ds)] = True
    cy, cx = np.unravel_index(np.argmin(np.where(margin, np.abs(share - 0.7), 9)), share.shape)
    x0, y0 = int(cx * ds - bw / 2), int(cy * ds - bh / 2)
    x1, y1 = x0 + bw, y0 + bh
    mpp = slide.mpp
    shapes = viewer.add_shapes([[[y0 * mpp, x0 * mpp], [y0 * mpp, x1 * mpp], [y1 * mpp, x1 * mpp], [y1 * mpp, x0 * mpp]]],
                               shape_type="rectangle", name="regions", edge_color="yellow", face_color="transparent",
                               edge_width=12, units=("um", "um"))
    widget.model_edit.setText(str(bundled_model_path()))
    widget.out_edit.setText(str(work / "out"))
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("regions")
    widget.instances_check.setChecked(True)
    viewer.reset_view()
    _settle(2500)
    _shot(viewer, "13_slide_open.png")

    # Segment the rectangle in the background; the labels store opens over the slide.
    widget.segment_button.click()
    _wait(lambda: widget.worker is None, timeout_s=1800)
    result = widget.last_result
    if result is None:
        print(f"segmentation failed: {widget.status.text()}", flush=True)
        return 1
    print(widget.status.text(), flush=True)
    labels = viewer.layers[f"{image.name} labels"]
    shapes.visible = False
    viewer.camera.center = ((y0 + y1) / 2 * mpp, (x0 + x1) / 2 * mpp)
    viewer.camera.zoom = 850 / ((x1 - x0) * mpp)
    _settle(2500)
    _shot(viewer, "14_slide_region_segmented.png")

    # The nuclei GeoJSON (level-0 pixel coordinates) drawn as outlines at the slide's scale.
    doc = json.loads(result.geojson.read_text())
    polygons = [np.asarray(f["geometry"]["coordinates"][0])[:, ::-1] * mpp for f in doc["features"]
                if f["geometry"]["type"] == "Polygon"]
    labels.visible = False
    viewer.add_shapes(polygons, shape_type="polygon", name=result.geojson.name, edge_color="cyan",
                      face_color="transparent", edge_width=0.6, units=("um", "um"))
    # Zoom on the tissue part of the rectangle: the labelled pixel nearest its centre.
    level0 = open_labels_store(result.labels_store).level0
    found = np.argwhere(np.asarray(level0[y0:y1, x0:x1]) > 0)
    cy, cx = (found[np.argmin(((found - [bh // 2, bw // 2]) ** 2).sum(1))] + [y0, x0]) if len(found) else (y0 + 400, x0 + 600)
    viewer.camera.center = (cy * mpp, cx * mpp)
    viewer.camera.zoom = 850 / (400 * mpp)
    _settle(2500)
    _shot(viewer, "15_slide_geojson.png")

    # Correct: open the field of view for editing, erase one nucleus and paint a new one, save.
    viewer.layers[result.geojson.name].visible = False
    labels.visible = True
    widget.scope_combo.setCurrentText("Field of view")
    viewer.layers.selection.active = labels
    widget.edit_button.click()
    edit = next(layer for layer in viewer.layers if " edit x" in layer.name)
    h, w = edit.data.shape
    nuclei = np.argwhere(np.asarray(edit.data) == 1)
    if len(nuclei):  # erase the nucleus nearest the right third with the fill bucket
        target = nuclei[np.argmin(((nuclei - [h // 2, 2 * w // 3]) ** 2).sum(1))]
        edit.fill(tuple(int(v) for v in target), 0)
    edit.brush_size = 14
    edit.selected_label = 1
    for k in range(12):
        edit.paint((h // 2, w // 3 + 2 * k), 1, refresh=False)  # a new elongated nucleus, left of centre
    edit.refresh()
    widget.save_edits_button.click()
    print(widget.status.text(), flush=True)
    _settle(2500)
    _shot(viewer, "16_slide_corrected.png")
    store = open_labels_store(result.labels_store)
    print(f"store edits: {store.attrs['genselfdiff'].get('edits')}", flush=True)
    print(f"finished; work files in {work}", flush=True)
    viewer.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a segmentation model file (default: train a starter model first)")
    parser.add_argument("--bootstrap-steps", type=int, default=300, help="steps of the starter model")
    parser.add_argument("--default-only", action="store_true",
                        help="only the bundled default model on the sample (11_default_model.png, 12_default_segmented.png)")
    parser.add_argument("--slides-only", action="store_true",
                        help="only the slide workflow on a synthetic slide with the bundled model (13-16_slide_*.png)")
    parser.add_argument("--glands-only", action="store_true",
                        help="only the bundled gland model on a GlaS test image (18_glands.png)")
    args = parser.parse_args(argv)
    if args.glands_only:
        return gland_shots()
    if args.default_only:
        return default_model_shots()
    if args.slides_only:
        return slide_shots()

    work = Path(tempfile.mkdtemp(prefix="genselfdiff-docs-"))
    os.environ["GENSELFDIFF_CONFIG_DIR"] = str(work / "config")
    os.environ["GENSELFDIFF_DATA_DIR"] = str(work / "data")
    model = Path(args.model) if args.model else bootstrap_model(work / "starter", args.bootstrap_steps)
    IMAGES.mkdir(parents=True, exist_ok=True)

    import napari

    from napari_genselfdiff.plugin._testing import open_widget

    viewer = napari.Viewer(title="napari-genselfdiff")
    viewer.window._qt_window.resize(1500, 950)
    widget = open_widget(viewer)
    widget.state.ask = lambda title, text: True
    _settle(800)

    # 1. Open the sample and the widget.
    image = viewer.open_sample("napari-genselfdiff", "he_nuclei")[0]
    _shot(viewer, "01_open.png")

    # 2. Choose the model.
    widget.model_panel.load(model)
    _shot(viewer, "02_model.png")

    # 3. Segment: a Labels layer with the model's classes, and the nuclei split into instances.
    panel = widget.segment_panel
    panel._instances.setChecked(True)
    panel.run()
    _wait(lambda: not widget.state.running("segment"))
    labels = viewer.layers[f"{image.name} labels"]
    labels.contour = 0
    _shot(viewer, "03_segmented.png")

    # 4. Correct: paint a missed nucleus, erase a false one (as a user would with the brush).
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.selected_label = 1
    yy, xx = np.mgrid[:512, :512]
    data = labels.data
    data[(yy - 60) ** 2 + (xx - 450) ** 2 < 9**2] = 1
    data[:40, :40] = 0
    labels.data = data
    widget.tabs.setCurrentIndex(1)
    _shot(viewer, "04_correct.png")

    # 5. Mark as corrected: a snapshot goes into the annotation set.
    widget.annotation_panel.select(labels.name, image.name)
    widget.annotation_panel.mark_corrected()
    _shot(viewer, "05_marked.png")

    # 6. Export the corrected masks (TIFF, PNG, QuPath GeoJSON).
    widget.export_panel.set_folder(work / "export")
    widget.export_panel.export()
    _shot(viewer, "06_exported.png")

    # 7. Pretrain on unlabeled images (here: the open image) in the background: the Train tab leads
    # with fine-tuning; the pretraining section below it opens on a click.
    widget.tabs.setCurrentIndex(2)
    widget.pretrain_section.expand(animate=False)
    pre = widget.pretrain_panel
    pre.arch.setCurrentText("tiny")
    pre.patch.setValue(64)
    pre.batch.setValue(2)
    pre.steps.setValue(2000)
    pre.checkpoint_every.setValue(20)
    pre.start()
    _wait(lambda: _steps(pre.run) >= 20)
    scroll = widget.tabs.currentWidget()
    _settle()
    scroll.ensureWidgetVisible(pre.preview_button)
    _shot(viewer, "07_pretraining.png")

    # 8. Fine-tune on the corrected pair: pretraining pauses, the new model is used afterwards.
    ft = widget.finetune_panel
    ft.patch.setValue(64)
    ft.batch.setValue(2)
    ft.steps.setValue(30)
    ft.start()
    _wait(lambda: _steps(ft.run) >= 12)
    scroll.verticalScrollBar().setValue(0)
    _shot(viewer, "08_finetuning.png")
    _wait(lambda: not widget.state.running("finetune"))
    _wait(lambda: not widget.state.running("segment"))
    # 9. Done: the panel's last word, and the new model listed by its display name (Segment tab).
    widget.pretrain_section.collapse(animate=False)
    scroll.verticalScrollBar().setValue(0)
    _shot(viewer, "10_finetuned.png")
    widget.stop_jobs(120)
    print(f"finished; work files in {work}", flush=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
