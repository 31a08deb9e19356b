"The layering of the package: inference loads and runs without the training modules."
import subprocess, sys, textwrap

def test_localize_runs_without_the_training_modules(tmp_path):
    "A combined model loads and localizes a clip in a fresh interpreter that never imports train_heads/train_avbt."
    code = textwrap.dedent(f"""
        import sys, dataclasses, torch
        from pathlib import Path
        from avbt_tacma.avbt import AVBTConfig, AVBT
        from avbt_tacma.heads import build_head
        from avbt_tacma.video import write_test_clip
        from avbt_tacma.localize import save_pipeline, load_pipeline, localize
        torch.manual_seed(0)
        cfg = AVBTConfig(audio_backbone='small', visual_backbone='small', weights='none', small_channels=(8, 16),
                         d_l=16, proj_dims=(32, 32, 24), image_size=64)
        kw = dict(d_l=16, d_h=16, d_e=16, mlp=(32, 16))
        avbt = dict(config=dict(model=dataclasses.asdict(cfg)), model=AVBT(cfg).state_dict())
        head = dict(config=dict(head='tacma', d_a=16, d_v=16, head_kw=kw),
                    model=build_head('tacma', 16, 16, **kw).state_dict())
        d = Path({str(tmp_path)!r})
        save_pipeline(d / 'model.pt', avbt, head, frame_size=64, framing='segment')
        res = localize(write_test_clip(d / 'v.mp4', seconds=3, size=(64, 48)), load_pipeline(d / 'model.pt', 'cpu'))
        assert [r['second'] for r in res] == [0, 1, 2], res
        print(sorted(m for m in sys.modules if m.startswith('avbt_tacma.')))
    """)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.strip().splitlines()[-1]
    assert 'avbt_tacma.localize' in loaded and 'avbt_tacma.heads' in loaded, loaded
    for training in ('avbt_tacma.train_heads', 'avbt_tacma.train_avbt'): assert training not in loaded, loaded

# ---------------------------------------------------------------- one home per decision
import io, json, re, tokenize
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent

def _sources():
    "(name, code) of every module of the package and of the code cells of the paper notebooks."
    for p in sorted((ROOT / 'avbt_tacma').glob('*.py')):
        if p.name != '_modidx.py': yield p.name, p.read_text()
    for p in sorted((ROOT / 'nbs' / 'paper').glob('*.ipynb')):
        cells = json.loads(p.read_text())['cells']
        code = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
        yield p.name, '\n'.join(l for l in code.splitlines() if not l.lstrip().startswith(('%', '!')))

FRAME_256 = re.compile(r'(frame_?size|cache_size|\bsize)\b[^=\n]*=\s*256\b|\bor 256\b', re.I)

def test_constants_have_one_definition():
    "Frame sizes, sample rate, theta and the ImageNet statistics are written once as numbers, everywhere else by name."
    found = {}
    for name, code in _sources():
        for t in tokenize.generate_tokens(io.StringIO(code).readline):
            if t.type != tokenize.NUMBER: continue
            if t.string == '256' and not FRAME_256.search(t.line): continue     # 256 is also a width and a batch
            found.setdefault(t.string, []).append(f"{name}:{t.start[0]}")
    for literal, home in [('256', 'video.py'), ('224', 'datasets.py'), ('16000', 'audio.py'), ('0.03', 'paper.py'),
                          ('0.485', 'datasets.py'), ('0.229', 'datasets.py')]:
        assert [w.split(':')[0] for w in found.get(literal, [])] == [home], (literal, found.get(literal))

def test_one_definition_of_each_helper():
    "The clip length, the repository root, the error line and the cache opener are each defined once."
    code = dict(_sources())
    lib = {n: c for n, c in code.items() if n.endswith('.py')}
    count = lambda pat: sum(len(re.findall(pat, c, re.M)) for c in lib.values())
    assert count(r'^(CLIP_SECONDS|T_SEGMENTS)\s*=\s*\d') == 1          # CLIP_SECONDS is T_SEGMENTS
    assert count(r'parent\.parent') == 1                               # core.repo_root
    assert count(r'^def one_line\b') == 1 and count(r'^def _first_line\b') == 0
    assert count(r'^def cache_object\b') == 1 and count(r'^def _open\b') == 0
    assert count(r'^def build_head\b') == 1 and count(r'^def rebuild_head\b') == 1
    assert count(r'^HEADS\s*=') == 1 and count(r'^PAPER_VALUES\s*=') == 1 and count(r'^TABLE4_VARIANTS\s*=') == 1
    assert sum(c.count('shared_projector=False') for c in code.values()) == 1   # the Table 4 variants: scales only
    assert count(r'use_deterministic_algorithms\(') == 2                # set and restored by core.seeded, only
    runner = ('scales', 'sources', 'store', 'steps', 'reproduce', 'repro')
    assert not any('is_available' in lib[f'{m}.py'] for m in runner)     # "is it a GPU": core.device_type

def test_pipeline_takes_the_input_settings_from_the_checkpoint(tmp_path):
    "The AV-BT checkpoint's recorded input settings reach the combined model; without them (cache gone): an error."
    import dataclasses, pytest
    from avbt_tacma.core import AVBTError, load_checkpoint
    from avbt_tacma.avbt import AVBTConfig
    from avbt_tacma.heads import build_head
    from avbt_tacma.localize import save_pipeline
    cfg = AVBTConfig(audio_backbone='small', visual_backbone='small', weights='none', small_channels=(8, 16), d_l=16,
                     proj_dims=(32, 32, 24), image_size=64)
    kw = dict(d_l=16, d_h=16, d_e=16, mlp=(32, 16))
    head = dict(config=dict(head='tacma', d_a=16, d_v=16, head_kw=kw),
                model=build_head('tacma', 16, 16, **kw).state_dict())
    inputs = dict(frame_size=96, framing='vggish', sample_rate=16000)
    avbt = dict(config=dict(model=dataclasses.asdict(cfg), cache=str(tmp_path / 'moved'), inputs=inputs), model={})
    ck = load_checkpoint(save_pipeline(tmp_path / 'a.pt', avbt, head), 'avbt_tacma')
    assert ck['config']['prepare'] == inputs
    old = dict(config=dict(model=dataclasses.asdict(cfg), cache=str(tmp_path / 'moved')), model={})   # nothing recorded
    with pytest.raises(AVBTError, match='does not record the frame size'): save_pipeline(tmp_path / 'b.pt', old, head)
    ck = load_checkpoint(save_pipeline(tmp_path / 'c.pt', old, head, frame_size=128, framing='segment'), 'avbt_tacma')
    assert ck['config']['prepare'] == dict(frame_size=128, framing='segment', sample_rate=16000)
    with pytest.raises(AVBTError, match='44100 Hz'):
        other = dict(avbt, config=dict(avbt['config'], inputs=dict(inputs, sample_rate=44100)))
        save_pipeline(tmp_path / 'd.pt', other, head)

def test_modules_import_only_earlier_notebooks():
    "The import map: every module imports (also inside functions) only modules of smaller-numbered notebooks."
    home, imports = {}, {}
    for p in (ROOT / 'avbt_tacma').glob('*.py'):
        m = re.search(r'File to edit: \.\./nbs/([\w.]+)\.ipynb', p.read_text())
        if m: home[p.stem] = m.group(1)
    for mod in home:
        code = (ROOT / 'avbt_tacma' / f'{mod}.py').read_text()
        found = re.findall(r'from (?:avbt_tacma)?\.(\w+) import|import avbt_tacma\.(\w+)', code)
        imports[mod] = {a or b for a, b in found} & set(home) - {mod}
    upward = [(home[m], home[t]) for m, ts in imports.items() for t in ts if home[t] > home[m]]
    assert not upward, upward                     # sorted names order the notebooks: '09a_x' sits between 09_ and 10_
    assert len(home) >= 20 and imports['localize'] and imports['train_heads']
