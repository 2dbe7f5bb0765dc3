# Seed article 000: the PyTorch CIFAR-10 tutorial (LeNet, SGD lr 0.001 momentum 0.9, per-class
# accuracy), as published, with only these changes:
#  - the import lines point at minigrad (torch -> minigrad, torch.nn -> minigrad.nn, ...);
#  - torchvision's CIFAR-10 is replaced by small local arrays of the same shape (3x32x32, 10
#    classes, each class a fixed random pattern plus noise, so there is something to learn);
#  - with 120 training images instead of 50000, the loss is printed every 10 mini-batches
#    instead of every 2000, and test accuracy is over the local test set.
import numpy as np
import minigrad as torch
from minigrad.data import TensorDataset

# 加载数据集 (small and local instead of torchvision.datasets.CIFAR10)
rng = np.random.default_rng(0)
patterns = rng.normal(size=(10, 3, 32, 32)).astype(np.float32)


def local_cifar(n):
    labels = np.arange(n) % 10
    images = (patterns[labels] + rng.normal(size=(n, 3, 32, 32))).astype(np.float32)
    return TensorDataset(images, labels)


trainset = local_cifar(120)
trainloader = torch.utils.data.DataLoader(trainset, batch_size=4, shuffle=True, num_workers=2)
testset = local_cifar(40)
testloader = torch.utils.data.DataLoader(testset, batch_size=4, shuffle=False, num_workers=2)
classes = ('plane', 'car', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')

# 定义神经网络
import minigrad.nn as nn
import minigrad.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


net = Net()
# 定义损失函数和优化器
import minigrad.optim as optim
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
# 训练网络
for epoch in range(2):  # 多次循环遍历数据集
    running_loss = 0.0
    for i, data in enumerate(trainloader, 0):
        # 获取输入
        inputs, labels = data
        # 梯度清零
        optimizer.zero_grad()
        # 正向传播,反向传播,优化
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        # 打印统计信息
        running_loss += loss.item()
        if i % 10 == 9:  # 每10个小批量数据打印一次
            print('[%d, %5d] loss: %.3f' % (epoch + 1, i + 1, running_loss / 10))
            running_loss = 0.0
print('Finished Training')
# 测试网络
correct = 0
total = 0
with torch.no_grad():
    for data in testloader:
        images, labels = data
        outputs = net(images)
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
print('Accuracy of the network on the %d test images: %d %%' % (total, 100 * correct / total))
# 输出每个类别的准确率
class_correct = list(0. for i in range(10))
class_total = list(0. for i in range(10))
with torch.no_grad():
    for data in testloader:
        images, labels = data
        outputs = net(images)
        _, predicted = torch.max(outputs, 1)
        c = (predicted == labels).squeeze()
        for i in range(4):
            label = labels[i]
            class_correct[label] += c[i].item()
            class_total[label] += 1
for i in range(10):
    print('Accuracy of %5s : %2d %%' % (classes[i], 100 * class_correct[i] / class_total[i]))
