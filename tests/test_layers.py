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
        head = dict(config=dict(head='tacma', d_a=16, d_v=16, head_kw=kw), model=build_head('tacma', 16, 16, **kw).state_dict())
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
