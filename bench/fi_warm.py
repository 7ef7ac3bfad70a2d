"""Compile FlashInfer's two decode paths for the bench's shape on a tiny problem (run in the
background during the GPU tests so the bench does not pay the JIT build)."""
import flashinfer
import torch

H, HKV, D, S, B = 32, 8, 128, 8, 2
k = torch.randn(B * 4, HKV, S, D, device="cuda", dtype=torch.bfloat16)
indptr = torch.tensor([0, 4, 8], dtype=torch.int32, device="cuda")
idx = torch.arange(8, dtype=torch.int32, device="cuda")
last = torch.full((B,), S, dtype=torch.int32, device="cuda")
q = torch.randn(B, H, D, device="cuda", dtype=torch.bfloat16)
ws = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
for tc in (False, True):
    w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "HND", use_tensor_cores=tc)
    w.plan(indptr, idx, last, H, HKV, D, S, q_data_type=torch.bfloat16,
           kv_data_type=torch.bfloat16)
    w.run(q, (k, k))
torch.cuda.synchronize()
print("flashinfer warm: ok")
