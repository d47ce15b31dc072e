import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dwstft._figure import save_figure
from dwstft.cli import main
from dwstft.train.curves import curves_figure, plot_curves
from dwstft.viz import basis, curves, features, pareto

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_width: int = 600, min_height: int = 200) -> tuple[int, int]:
    """The file is a PNG of a plausible size; returns (width, height) in pixels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        width, height = img.size
    assert min_width <= width <= 4000 and min_height <= height <= 4000
    return width, height


def history(epochs: int = 6, switch: int = 4, offset: float = 0.0) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / e + offset,
            "train_acc": 0.5 + 0.05 * e,
            "test_loss": 2.2 / e + offset,
            "test_acc": 0.45 + 0.05 * e - offset,
            "lr": 0.01,
            "batch_size": 64 if e <= switch else 128,
            "seconds": 1.5,
        }
        for e in range(1, epochs + 1)
    ]


def write_run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (folder / "metrics.jsonl").write_text(lines, encoding="utf-8")
    return folder


BENCH = {
    "device": "cpu (2 threads)",
    "command": "dwstft bench models",
    "date": "2025-01-01",
    "models": [
        {"model": "stftnet_b8_f128", "params": 301156, "macs": 109900000, "train_ips_b64": 512.3,
         "saved_bytes_b64": 123456789, "cifar10_acc": 93.1},
        {"model": "stftnet_b16_f128", "params": 700000, "macs": 150000000, "train_ips_b64": 450.0,
         "saved_bytes_b64": 150000000},
        {"model": "mobilenetv2", "params": 2300000, "macs": 96000000, "train_ips_b64": 480.0,
         "saved_bytes_b64": 300000000},
        {"model": "shufflenet", "params": 900000, "macs": 45000000, "train_ips_b64": 700.0,
         "saved_bytes_b64": 200000000, "peak_bytes_b64": None},
    ],
}  # fmt: skip


def test_basis_cli_writes_png(tmp_path, capsys):
    out = tmp_path / "basis.png"
    assert main(["viz", "basis", "--kernel-size", "3", "5", "7", "--output", str(out)]) == 0
    width, height = assert_png(out, min_width=1200)
    assert width > height
    assert str(out) in capsys.readouterr().out


def test_basis_figure_has_eight_titled_kernels_per_size():
    fig = basis.basis_figure((3, 5))
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 2 * 8
    titles = [ax.get_title() for ax in panels]
    assert titles[0] == "Re v1 = [1/3, 0]"
    assert titles[7] == "Im v4 = [1/3, -1/3]"
    assert titles[8 + 4] == "Re v3 = [1/5, 1/5]"
    # one shared colour bar, centred on 0
    clims = {ax.images[0].get_clim() for ax in panels}
    assert clims == {(-1.0, 1.0)}
    assert len(fig.axes) == 2 * 8 + 1


def test_basis_figure_rejects_even_size():
    with pytest.raises(ValueError, match="kernel_size"):
        basis.basis_figure((4,))


def test_features_cli_with_digit(tmp_path):
    out = tmp_path / "digit.png"
    assert main(["viz", "features", "--image", "digits:7", "--output", str(out)]) == 0
    assert_png(out, min_height=150)


@pytest.mark.parametrize(("mode", "suffix", "rows"), [("RGB", ".png", 3), ("L", ".jpg", 1)])
def test_features_from_image_file(tmp_path, mode, suffix, rows):
    rng = np.random.default_rng(0)
    shape = (40, 56, 3) if mode == "RGB" else (40, 56)
    path = tmp_path / f"picture{suffix}"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    image, name = features.load_image(str(path))
    assert image.shape == (rows, 40, 56) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0 and name == path.name
    fig = features.features_figure(image, 5, name)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == rows * 9
    # every STFT map has its own symmetric colour scale, stated in its title
    assert all("±" in ax.get_title() for ax in panels if "input" not in ax.get_title())
    out = tmp_path / "features.png"
    argv = ["viz", "features", "--image", str(path), "--kernel-size", "5", "--output", str(out)]
    assert main(argv) == 0
    assert_png(out, min_height=150)


def test_load_image_shrinks_large_images(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (600, 300), "white").save(path)
    image, _ = features.load_image(str(path), max_size=128)
    assert image.shape == (3, 64, 128)


def test_load_image_stretches_16_bit_greyscale(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)).save(path)
    image, _ = features.load_image(str(path))
    assert image.shape == (1, 2, 2)
    np.testing.assert_allclose(image[0], [[0.0, 0.25], [0.5, 1.0]])


@pytest.mark.parametrize("spec", ["digits:-1", "digits:1797", "digits:x"])
def test_load_image_rejects_bad_digit_index(spec):
    with pytest.raises(ValueError, match="digits:N"):
        features.load_image(spec)


def test_load_image_rejects_non_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(ValueError, match="not an image"):
        features.load_image(str(path))


def test_curves_cli_overlays_two_runs(tmp_path):
    a = write_run(tmp_path / "run_a", history())
    b = write_run(tmp_path / "run_b", history(switch=5, offset=0.1))
    out = tmp_path / "curves.png"
    argv = ["viz", "curves", str(a), str(b), "--labels", "A", "B", "--output", str(out)]
    assert main(argv) == 0
    assert_png(out)


def test_curves_figure_styles_and_batch_marks():
    runs = {"A": history(switch=4), "B": history(switch=5)}
    fig = curves_figure(runs)
    loss_ax, acc_ax = fig.axes[:2]
    styles = [line.get_linestyle() for line in loss_ax.get_lines()]
    # per run: train dashed and test solid curves, then a dotted batch-size mark
    assert styles.count("--") == 2 and styles.count("-") == 2 and styles.count(":") == 2
    marks = [line.get_xdata()[0] for line in acc_ax.get_lines() if line.get_linestyle() == ":"]
    assert sorted(marks) == [4.5, 5.5]
    assert max(acc_ax.get_lines()[1].get_ydata()) == pytest.approx(100 * 0.75)
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts[0].startswith("A (best test 75.00%")


def test_plot_curves_single_run_is_the_train_plot(tmp_path):
    out = plot_curves({"stftnet_b8_f128": history()}, tmp_path / "curves.png", "title")
    assert_png(out)


def test_curves_missing_metrics_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    argv = ["viz", "curves", str(tmp_path / "empty_run"), "--output", str(tmp_path / "c.png")]
    assert main(argv) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_read_run_names_missing_keys(tmp_path):
    run = write_run(tmp_path / "run", [{"epoch": 1, "train_loss": 1.0}])
    with pytest.raises(ValueError, match=r"metrics.jsonl:1 lacks \['train_acc'"):
        curves.read_run(run)


def test_labels_must_match_runs(tmp_path, capsys):
    a = write_run(tmp_path / "a", history())
    argv = ["viz", "curves", str(a), "--labels", "x", "y", "--output", str(tmp_path / "c.png")]
    assert main(argv) == 2
    assert "--labels has 2 names, expected one per run folder (1)" in capsys.readouterr().err


def test_run_labels_disambiguate_equal_folder_names(tmp_path):
    dirs = [tmp_path / "x" / "run", tmp_path / "y" / "run"]
    assert curves.run_labels(dirs) == [str(d) for d in dirs]
    assert curves.run_labels([tmp_path / "x"]) == ["x"]


def test_pareto_cli_writes_png_and_warns_about_skipped(tmp_path, capsys):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    out = tmp_path / "pareto.png"
    assert main(["viz", "pareto", str(bench), "--logx", "--output", str(out)]) == 0
    assert_png(out, min_height=400)
    argv = ["viz", "pareto", str(bench), "--y", "cifar10_acc", "--output", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped 3 model(s)" in err and "mobilenetv2" in err


def test_pareto_figure_groups_labels_and_axes():
    fig, skipped = pareto.pareto_figure(BENCH, x="params", y="train_ips_b64")
    ax = fig.axes[0]
    assert skipped == []
    assert ax.get_xlabel() == "trainable parameters (M)"
    assert ax.get_ylabel() == "training throughput, batch 64 (images/s)"
    names = {t.get_text() for t in ax.texts}
    assert names == {m["model"] for m in BENCH["models"]}
    groups = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
    assert groups == {"STFTNet (ours)": 2, "baselines": 2}


def test_pareto_unknown_field_is_a_clear_error(tmp_path, capsys):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    argv = ["viz", "pareto", str(bench), "--y", "speed", "--output", str(tmp_path / "p.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--y 'speed' is not a numeric field" in err and "train_ips_b64" in err


def test_load_bench_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="'models' list"):
        pareto.load_bench(path)


@pytest.mark.parametrize(
    ("field", "label", "scale"),
    [
        ("params", "trainable parameters (M)", 1e-6),
        ("train_ips_b128", "training throughput, batch 128 (images/s)", 1.0),
        ("latency_b1_ms", "inference latency, batch 1 (ms)", 1.0),
        ("saved_bytes_b64", "memory saved for backward, batch 64 (MiB)", 2.0**-20),
        ("cifar100_acc", "CIFAR-100 test accuracy (%)", 1.0),
        ("my_metric", "my metric", 1.0),
    ],
)
def test_field_labels_are_readable(field, label, scale):
    assert pareto.field_label(field) == (label, scale)


def test_pareto_front_keeps_non_dominated_models():
    points = [(0.3, 500.0), (0.9, 700.0), (2.3, 480.0), (3.2, 900.0)]
    assert pareto._frontier(points, "params", "train_ips_b64") == [
        (0.3, 500.0),
        (0.9, 700.0),
        (3.2, 900.0),
    ]
    assert pareto._frontier(points, "params", "unknown") == []


def test_output_must_be_png(tmp_path):
    with pytest.raises(ValueError, match=r"output must be a \.png file"):
        save_figure(basis.basis_figure((3,)), tmp_path / "basis.pdf")
