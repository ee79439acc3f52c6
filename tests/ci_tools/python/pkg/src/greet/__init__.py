from concurrent.futures import ProcessPoolExecutor


def square(x):
    return x * x


def main():
    # Worker processes: the multiprocessing machinery (fork, pipes, semaphores) under ci.
    with ProcessPoolExecutor(max_workers=2) as pool:
        total = sum(pool.map(square, range(10)))
    print(f"greet: sum of squares {total}")
