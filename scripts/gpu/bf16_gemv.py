"""bf16 GEMV baseline through PyTorch (cuBLAS) at the 2B4T shapes the ternary kernels run:
median time per product over 5 rounds of 100, and the bandwidth of the bf16 weights read."""
import torch

torch.manual_seed(0)
shapes = [(2560, 2560), (2560, 640), (2560, 6912), (6912, 2560), (2560, 128256)]
print(f"{'bf16 gemv (K x M)':<24} {'bytes':>10} {'us':>10} {'GB/s':>9}")
for k, m in shapes:
    w = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
    for _ in range(10):
        torch.mv(w, x)
    torch.cuda.synchronize()
    rounds = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(100):
            torch.mv(w, x)
        end.record()
        torch.cuda.synchronize()
        rounds.append(start.elapsed_time(end) / 100 * 1e3)
    us = sorted(rounds)[2]
    nbytes = 2 * k * m
    print(f"{f'{k}x{m}':<24} {nbytes:>10} {us:>10.2f} {nbytes / us / 1e3:>9.0f}")
