# Seed article 003: batch size 1 / 32 / 1024 on 1000x10 random data, as published, with the
# import lines pointing at minigrad. One fix PyTorch needs too: the article's SimpleModel has no
# forward() (calling it raises NotImplementedError in PyTorch as well), so forward is added. The
# last loss of each run is also printed on its own line, for the test to read.
import minigrad as torch
import minigrad.nn as nn
from minigrad.data import DataLoader


# 1. 定义简单模型
class SimpleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 2)  # 10维输入到2维输出

    def forward(self, x):  # (missing in the article)
        return self.fc(x)


# 2. 创建模拟数据集
data = torch.randn(1000, 10)        # 1000个样本
targets = torch.randint(0, 2, (1000,))
dataset = torch.utils.data.TensorDataset(data, targets)
# 3. 不同batch_size的影响对比
for batch_size in [1, 32, 1024]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = SimpleModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    # 训练监控
    print(f"\nBatch Size: {batch_size}")
    for epoch in range(3):
        for x, y in loader:
            optimizer.zero_grad()
            output = model(x)
            loss = nn.CrossEntropyLoss()(output, y)
            loss.backward()
            optimizer.step()
        print(f"Epoch {epoch} Loss: {loss.item():.4f}", end='\r')
    print()
