import torch
from torch.cuda.amp import GradScaler


def train(model, loader, criterion, epochs=3):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad()
            # forward
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()


def train_amp(model, loader, criterion, opt):
    scaler = GradScaler()
    for inputs, targets in loader:
        opt.zero_grad()
        loss = criterion(model(inputs), targets)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


class Trainer:
    def fit(self, loader):
        while self.running:
            self.optim.zero_grad()
            batch = next(loader)
            self.model(batch).sum().backward()
            self.optim.step()
