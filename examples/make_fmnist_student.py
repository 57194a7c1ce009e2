#!/usr/bin/python3
"""Writes the TorchScript student of examples/distill-fmnist-torchscript.yaml.

Usage: python3 examples/make_fmnist_student.py [OUT]   (default: examples/fmnist_student.pt)

Any nn.Module works as a Lattice model if torch.jit.script accepts it and its forward takes
one float32 tensor [B, ...] (the rows, reshaped to [B, *input_shape]) and returns the
logits [B, classes]. Lattice trains every parameter with requires_grad (set it False to
freeze one), switches train()/eval() around validation, and gives back the trained module:
`lattice checkpoint download <trial> -o student.pt`, then torch.jit.load("student.pt").
"""
import sys

import torch


class SmallCnn(torch.nn.Module):
    """Two strided 3x3 convolutions and a linear head: ~7k parameters (the teacher of
    examples/fashion-mnist-teacher.yaml has ~535k)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU())
        self.head = torch.nn.Linear(16 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, 28, 28]
        return self.head(self.features(x).flatten(1))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/fmnist_student.pt"
    torch.manual_seed(0)
    model = SmallCnn()
    print("parameters:", sum(p.numel() for p in model.parameters()))
    torch.jit.script(model).save(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
