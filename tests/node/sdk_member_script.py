"""A plain PyTorch training script made a consortium member by the lines marked `# + meshprov` (4 of them).

Run by tests/node/test_node_sdk.py as a real process: `python sdk_member_script.py ROUNDS`, configured by the
MESHPROV_* environment like `meshprov node run`. Without the marked lines (and the loop's indentation) it is the
script as its author wrote it: load data, build the model, train, done.
"""

import sys

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from node.sdk import Member  # + meshprov

digits = load_digits()
x = torch.tensor(digits.data[:300] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
y = torch.tensor(digits.target[:300], dtype=torch.int64)
train_set = TensorDataset(x, y)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

for rnd in Member.from_settings(rounds=int(sys.argv[1]), poll_s=0.05, max_poll_s=0.2).rounds():  # + meshprov
    model.load_state_dict(rnd.base)  # + meshprov
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _epoch in range(2):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
    rnd.submit(model.state_dict(), num_samples=len(train_set), dataset=train_set)  # + meshprov
    print(f"round {rnd.number}: submitted, last batch loss {loss.item():.3f}", flush=True)
