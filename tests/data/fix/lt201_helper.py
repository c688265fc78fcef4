def update(model, optimizer, x, y, criterion):
    criterion(model(x), y).backward()
    optimizer.step()


def train(model, optimizer, loader, criterion):
    for x, y in loader:
        update(model, optimizer, x, y, criterion)
