"""Every kind of bad input stops with one `error: ...` line, exit status 2, and nothing already written lost.

One test per row of the README's bad-input table. The rows that need a CLI process are marked slow; the
checks that stop before Hydra run in this process. The last test enforces the slow mark suite-wide: every
test that launches a CLI process (directly, through a helper or through a fixture) carries it, so
`pytest -m 'not slow'` skips exactly the end-to-end runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import clean_env, cli_process

TINY_RUN = ["model=lenet5", "data=digits", "data.num_workers=0", "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=csv"]


def cli(*args: str, cwd: Path, data_dir: Path, command: str = "train", env: dict | None = None) -> subprocess.CompletedProcess:
    return cli_process(command, *args, f"paths.data_dir={data_dir}", cwd=cwd, env=env, timeout=300)


def in_process(*args: str, cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """`convnetlab-train *args` in this process: for the checks that stop before Hydra starts (fast)."""
    from convnetlab.cli import train

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["convnetlab-train", *args])
    with pytest.raises(SystemExit) as stopped:
        train.main()
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, stopped.value.code, captured.out, captured.err)


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    for name in names:
        assert name in last, last
    return last


def image_folder(root: Path, classes: dict[str, int]) -> Path:
    for split in ("train", "val"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (40, 40), (i * 20 % 255, 80, 160)).save(folder / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """A finished LeNet-5 run (a few steps) whose checkpoint the resume rows reuse."""
    root = tmp_path_factory.mktemp("bad_input")
    run = root / "run"
    proc = cli(*TINY_RUN, f"hydra.run.dir={run}", cwd=root, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def snapshot(run: Path) -> dict[str, bytes]:
    kept = [*run.glob(".hydra/*"), *run.glob("checkpoints/*"), run / "metrics.csv", run / "metrics.json",
            run / "config_resolved.yaml"]
    return {str(p.relative_to(run)): p.read_bytes() for p in kept if p.is_file()}


@pytest.mark.parametrize("group", ["model", "data", "trainer"])
def test_an_unknown_config_option_lists_the_valid_ones(group, tmp_path, monkeypatch, capsys):
    proc = in_process(f"{group}=nosuch", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    last = assert_one_line_error(proc, f"unknown {group} 'nosuch'")
    assert {"model": "resnet18", "data": "shapes", "trainer": "ddp_cpu"}[group] in last
    assert not (tmp_path / "outputs").exists()  # stopped before Hydra made a run dir


@pytest.mark.parametrize("override, expected", [
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc' must be Optional[int]"),
    ("data.batch_size=1.5", "data.batch_size=1.5 must be int"),
    ("optimizer.lr=fast", "optimizer.lr='fast' must be float"),
])
def test_a_value_of_the_wrong_type_names_key_value_and_type(override, expected, tmp_path, monkeypatch, capsys):
    assert_one_line_error(in_process(override, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys), expected)
    assert not (tmp_path / "outputs").exists()


def test_a_key_that_does_not_exist_is_named_with_the_plus_syntax_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    proc = in_process("trainer.max_epoch=3", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    last = assert_one_line_error(proc, "'trainer.max_epoch'", "+trainer.max_epoch=3")
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [last]  # the one line, nothing else
    assert list(tmp_path.iterdir()) == []  # no outputs/, no run dir, no log


def test_a_required_value_left_unset_is_asked_for_with_its_override_and_nothing_is_written(tmp_path, monkeypatch,
                                                                                          capsys):
    proc = in_process("data=imagefolder", "hydra.run.dir=run", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert assert_one_line_error(proc) == "error: data.root must be set: add data.root=<dataset folder> to the command line"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("program, module, args, expected", [
    ("convnetlab-eval", "evaluate", ["ckpt_path=x.ckpt", "data.root=/d"],
     "data.root needs a data chosen first: add data=<one of: digits, "),
    ("convnetlab-compare", "compare", ["model=resnet18"], "convnetlab-compare has no model option"),
])
def test_a_setting_of_a_group_the_command_has_not_chosen_says_what_would_work(program, module, args, expected,
                                                                              tmp_path, monkeypatch, capsys):
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [program, *args])
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(f"convnetlab.cli.{module}").main()
    proc = subprocess.CompletedProcess(args, stopped.value.code, "", capsys.readouterr().err)
    assert assert_one_line_error(proc).startswith(f"error: {expected}")
    assert "+" not in assert_one_line_error(proc)  # Hydra's "+key" advice would not work either


def test_a_new_run_stopped_by_bad_data_leaves_no_empty_run_dir_but_a_named_one_is_kept(tmp_path, monkeypatch, capsys):
    root = image_folder(tmp_path / "one", {"cat": 2})
    proc = in_process("data=imagefolder", f"data.root={root}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(proc, "1 class(es)")
    assert not [p for p in tmp_path.rglob(".hydra")]  # Hydra made outputs/train/<day>/<time>/; it is gone
    proc = in_process("data=imagefolder", f"data.root={root}", "hydra.run.dir=mine", cwd=tmp_path,
                      monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(proc, "1 class(es)")
    assert (tmp_path / "mine" / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow
def test_a_missing_data_root_is_named(tmp_path, data_dir):
    missing = tmp_path / "no_such_dataset"
    assert_one_line_error(cli("data=imagefolder", f"data.root={missing}", cwd=tmp_path, data_dir=data_dir),
                          str(missing), "does not exist")


@pytest.mark.slow
def test_an_empty_data_root_is_named(tmp_path, data_dir):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert_one_line_error(cli("data=imagefolder", f"data.root={tmp_path / 'empty'}", cwd=tmp_path, data_dir=data_dir),
                          str(tmp_path / "empty" / "train"), "no class folders")


@pytest.mark.slow
def test_a_class_folder_without_images_is_named(tmp_path, data_dir):
    root = image_folder(tmp_path / "ds", {"cat": 3, "dog": 3})
    (root / "train" / "bird").mkdir()
    (root / "val" / "bird").mkdir()
    assert_one_line_error(cli("data=imagefolder", f"data.root={root}", "data.image_size=32", "data.num_workers=0",
                              cwd=tmp_path, data_dir=data_dir), f"class folder {root / 'train' / 'bird'} has no images")


@pytest.mark.slow
def test_num_classes_that_disagree_with_the_data_are_an_error(tmp_path, data_dir):
    assert_one_line_error(cli(*TINY_RUN, "model.num_classes=7", cwd=tmp_path, data_dir=data_dir), "7", "10")


@pytest.mark.slow
def test_weights_for_another_architecture_are_an_error(finished_run, tmp_path, data_dir):
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    assert_one_line_error(cli(*TINY_RUN, "model=resnet18", "model.width=0.125", f"model.weights={ckpt}",
                              cwd=tmp_path, data_dir=data_dir), str(ckpt), "resnet18")


@pytest.mark.slow
def test_resuming_a_checkpoint_of_another_model_is_an_error_and_loses_nothing(finished_run, data_dir):
    before = snapshot(finished_run)
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    proc = cli(f"ckpt_path={ckpt}", "model=resnet18", "model.width=0.125", cwd=finished_run.parent, data_dir=data_dir)
    assert_one_line_error(proc, str(ckpt), "lenet5", "resnet18")
    assert snapshot(finished_run) == before  # .hydra/ (replayed by the next resume), checkpoints, metrics


@pytest.mark.slow
def test_resuming_from_a_truncated_checkpoint_is_one_line_and_loses_nothing(finished_run, data_dir):
    last = finished_run / "checkpoints" / "last.ckpt"
    cut = finished_run / "checkpoints" / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[:4096])
    before = snapshot(finished_run)
    try:
        proc = cli(f"ckpt_path={cut}", cwd=finished_run.parent, data_dir=data_dir)
    finally:
        cut.unlink()
    assert_one_line_error(proc, str(cut), "damaged")
    assert snapshot(finished_run) == {k: v for k, v in before.items() if k != "checkpoints/cut.ckpt"}


@pytest.mark.slow
def test_a_corrupt_image_is_named_with_the_policy_that_skips_it(tmp_path, data_dir):
    root = image_folder(tmp_path / "ds", {"cat": 4, "dog": 4})
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = cli("data=imagefolder", f"data.root={root}", "data.image_size=32", "data.num_workers=0", "model=lenet5",
               "model.in_channels=3", "trainer.max_epochs=1", "logger=csv", cwd=tmp_path, data_dir=data_dir)
    assert_one_line_error(proc, "broken.jpg", "data.bad_images=skip")


def test_a_missing_checkpoint_is_named_by_train(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nope.ckpt"
    assert_one_line_error(in_process(f"ckpt_path={missing}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys),
                          str(missing))


@pytest.mark.slow
def test_a_missing_checkpoint_is_named_by_eval(tmp_path, data_dir):
    missing = tmp_path / "nope.ckpt"
    assert_one_line_error(cli(f"ckpt_path={missing}", cwd=tmp_path, data_dir=data_dir, command="evaluate"), str(missing))


@pytest.mark.slow
def test_wandb_online_without_credentials_is_an_error(tmp_path, data_dir):
    proc = cli(*TINY_RUN, "logger=[csv,wandb]", "logger.wandb.mode=online", cwd=tmp_path, data_dir=data_dir)
    assert_one_line_error(proc, "wandb login", "WANDB_API_KEY")


def test_an_api_key_override_is_refused_before_anything_is_saved(tmp_path, monkeypatch, capsys):
    proc = in_process("+logger.wandb.api_key=abc123secret", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(proc, "WANDB_API_KEY")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_the_wandb_key_never_lands_in_the_run_dir(tmp_path, data_dir):
    secret = "0123456789abcdef0123456789abcdef01234567"
    env = clean_env(tmp_path) | {"WANDB_API_KEY": secret}
    run = tmp_path / "run"
    proc = cli(*TINY_RUN, "logger=[csv,wandb]", "logger.wandb.mode=offline", f"hydra.run.dir={run}", cwd=tmp_path,
               data_dir=data_dir, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any("wandb" in str(p) for p in files) and any(p.name == "config.yaml" for p in files)
    assert not [p for p in files if secret.encode() in p.read_bytes()]
    assert secret not in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- `-m 'not slow'`
TESTS = Path(__file__).resolve().parent
LAUNCHERS = {"run_cli", "cli_process"}  # conftest's
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def _launches_directly(node: ast.AST) -> bool:
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        if isinstance(func, ast.Name) and func.id in LAUNCHERS:
            return True
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (
                (func.value.id == "subprocess" and func.attr in SUBPROCESS_CALLS and _names_a_cli(call))
                or (func.value.id == "CLI" and func.attr in {"run", "popen"})):
            return True
    return False


def _names_a_cli(call: ast.Call) -> bool:
    """A subprocess of a CLI (``-m convnetlab.cli.x``, ``convnetlab-x``), not a ``python -c`` probe."""
    return any(s in ast.unparse(call) for s in ("convnetlab.cli", "convnetlab-"))


def _is_slow(node: ast.AST) -> bool:
    return "mark.slow" in ast.unparse(node)


def _launching_functions(tree: ast.Module, imported: set[str]) -> tuple[dict[str, ast.FunctionDef], set[str]]:
    """Module-level functions (tests, helpers, fixtures; test methods as Class.method) and those that launch a
    process: directly, by calling a launching helper, or by taking a launching fixture as an argument."""
    functions: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            functions.update({f"{node.name}.{f.name}": f for f in node.body if isinstance(f, ast.FunctionDef)})
    launching = {name for name, f in functions.items() if _launches_directly(f)} | imported
    changed = True
    while changed:
        changed = False
        for name, f in functions.items():
            called = {c.func.id for c in ast.walk(f) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
            arguments = {a.arg for a in f.args.args + f.args.kwonlyargs}
            if name not in launching and (called | arguments) & launching:
                launching.add(name)
                changed = True
    return functions, launching - imported


def cli_tests(path: Path) -> dict[str, bool]:
    """{test that launches a CLI process: whether it is marked slow} for one test module."""
    tree = ast.parse(path.read_text())
    imported = set()
    for node in tree.body:  # launching helpers imported from sibling modules (conftest's are in LAUNCHERS)
        if isinstance(node, ast.ImportFrom) and node.module and (TESTS / f"{node.module}.py").is_file():
            _, theirs = _launching_functions(ast.parse((TESTS / f"{node.module}.py").read_text()), set())
            imported |= {alias.asname or alias.name for alias in node.names if alias.name in theirs}
    functions, launching = _launching_functions(tree, imported)
    module_slow = any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
                      and _is_slow(n.value) for n in tree.body)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    result = {}
    for name in launching:
        if not name.split(".")[-1].startswith("test"):
            continue
        cls = classes.get(name.split(".")[0]) if "." in name else None
        decorators = [*functions[name].decorator_list, *(cls.decorator_list if cls else [])]
        result[name] = module_slow or any(_is_slow(d) for d in decorators)
    return result


def test_every_test_that_launches_a_cli_process_is_marked_slow():
    mine = cli_tests(Path(__file__))
    assert mine["test_weights_for_another_architecture_are_an_error"]  # found through the finished_run fixture
    assert mine["test_a_missing_data_root_is_named"]  # through the cli() helper
    assert "test_an_unknown_config_option_lists_the_valid_ones" not in mine  # in-process
    unmarked = [f"{path.name}::{name}" for path in sorted(TESTS.glob("test_*.py"))
                for name, slow in sorted(cli_tests(path).items()) if not slow]
    assert not unmarked, f"{unmarked} launch a CLI process but lack @pytest.mark.slow"


def test_a_dataset_with_one_class_is_refused_before_any_model_is_built(tmp_path):
    """torchmetrics (num_classes=1) would otherwise stop the run with a traceback before our own checks."""
    from convnetlab.cli.train import check_num_classes
    from convnetlab.data import ImageFolderDataModule

    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"{tmp_path} has 1 class\(es\) \(cat\); a classifier needs at least two"):
        check_num_classes(1, ImageFolderDataModule(tmp_path, image_size=32))
