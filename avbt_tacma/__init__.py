"""AV-BT + TACMA: audio-visual event localization (Applied Sciences 12, 12622, 2022), as a library.

Audio-visual Barlow Twins (AV-BT) learns audio and visual encoders without labels; temporally adaptive cross-modal
attention (TACMA) labels every second of a clip with one of the AVE's 28 events or background. Modules, in the order
of the method:

- `avbt_tacma.video`, `avbt_tacma.audio`, `avbt_tacma.prepare`: decode clips into frames and VGGish log-mel
- `avbt_tacma.avbt`, `avbt_tacma.train_avbt`: the AV-BT encoders, their training and feature extraction
- `avbt_tacma.tacma`, `avbt_tacma.baselines`, `avbt_tacma.heads`, `avbt_tacma.train_heads`: TACMA, PSP, AVEL, probes
  and their training
- `avbt_tacma.evaluate`, `avbt_tacma.paper`, `avbt_tacma.report`: accuracy, confusion matrices, the paper's numbers and
  its claims judged on a run
- `avbt_tacma.localize`: per-second labels for any video (`load_pipeline`, `localize`, `save_pipeline`)
- `avbt_tacma.synth`: the embedded synthetic AVE-like dataset
- `avbt_tacma.scales`, `avbt_tacma.sources`, `avbt_tacma.store`, `avbt_tacma.steps`, `avbt_tacma.reproduce`: the
  reproduction's sizes, data, run store, step runner and `avbt reproduce`

The command line is `avbt` (`avbt --help`); the README's "Use it from Python" shows short examples.
"""
__version__ = "0.1.0"
