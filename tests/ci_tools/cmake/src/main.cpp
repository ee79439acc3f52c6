#include <atomic>
#include <iostream>
#include <thread>
#include <vector>
#include "shapes.hpp"

int main() {
    auto shapes = make_shapes();
    std::atomic<long> total{0};
    std::vector<std::thread> workers;
    for (auto &s : shapes)
        workers.emplace_back([&total, &s] { total += s->area(); });
    for (auto &t : workers) t.join();
    std::cout << shapes.size() << " shapes, total area " << total << std::endl;
    return 0;
}
