# Seed article 001: the gradient-accumulation loop, as published, with the import lines pointing
# at minigrad. The article shows only the loop; the set-up around it (a small local data set, a
# classifier, SGD) is the minimum it needs. Note the article's `loss / accumulation_steps`: right
# only for equal micro-batches with nothing ignored (see minigrad.train for why).
import numpy as np
import minigrad as torch
import minigrad.nn as nn
import minigrad.optim as optim
from minigrad.data import DataLoader, TensorDataset

rng = np.random.default_rng(1)
features = rng.normal(size=(256, 10)).astype(np.float32)
targets = (features[:, 0] + features[:, 1] > 0).astype(np.int64)
trainloader = DataLoader(TensorDataset(features, targets), batch_size=8, shuffle=True)
net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.1)
accumulation_steps = 4

for epoch in range(3):
    epoch_loss = 0.0
    for i, (inputs, labels) in enumerate(trainloader):
        outputs = net(inputs)                   # 正向传播
        loss = criterion(outputs, labels)       # 计算损失函数
        loss = loss / accumulation_steps        # 损失标准化
        loss.backward()                         # 反向传播,计算梯度
        if (i + 1) % accumulation_steps == 0:
            optimizer.step()                    # 更新参数
            optimizer.zero_grad()               # 梯度清零
        epoch_loss += loss.item() * accumulation_steps
    print(f"Epoch {epoch} Loss: {epoch_loss / len(trainloader):.4f}")
