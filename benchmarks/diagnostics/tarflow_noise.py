"""Chapter 9's live TarFlow at its budget: the training noise sigma against the test bits/dim.

The chapter's TarFlow (4 blocks x 2 layers, width 64, 2x2 patches, 8x8 digits) trained with the
Trainer as in the chapter (validation tenth, best-on-validation weights, test set once) for
STEPS steps, with the training noise SIGMA::

    OMP_NUM_THREADS=1 python benchmarks/diagnostics/tarflow_noise.py 0.05 2500
    OMP_NUM_THREADS=1 python benchmarks/diagnostics/tarflow_noise.py 0.02 2500

prints one line: sigma, steps, test bits/dim, the step the validation chose, CPU seconds.
Results: ``benchmarks/results/tarflow_noise.md``.
"""

import sys
import time

import torch

from flowlab.data.images import load_digits
from flowlab.metrics import histogram_bits_per_dim
from flowlab.models.tarflow import TarFlow
from flowlab.train import Trainer

if __name__ == "__main__":
    torch.set_num_threads(1)
    noise, steps = float(sys.argv[1]), int(sys.argv[2])
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    train_d, test_d = load_digits("train"), load_digits("test")
    x_train, y_train = train_d.float(), train_d.labels
    x_test = test_d.float()
    K = train_d.num_levels
    torch.manual_seed(0)
    tar = TarFlow((1, 8, 8), K, patch_size=2, blocks=4, width=64, depth=2, heads=4,
                  noise_std=noise)
    trainer = Trainer(tar, torch.utils.data.TensorDataset(x_train, y_train), x_test, steps=steps,
                      batch_size=64, lr=1e-3, warmup_steps=min(warmup, steps // 10),
                      run_dir=None, progress=False, sample_every=0,
                      eval_every=max(1, steps // 7), log_every=steps, seed=0)
    cpu = time.process_time()
    trainer.fit()
    print(f"sigma {noise} steps {steps} warmup {min(warmup, steps // 10)}: test "
          f"{trainer.test_result['bits_per_dim']:.3f} bits/dim (histogram "
          f"{histogram_bits_per_dim(train_d.images, test_d.images, num_levels=K):.3f}), "
          f"chosen step {trainer.best_step}, {time.process_time() - cpu:.0f} CPU-s", flush=True)
