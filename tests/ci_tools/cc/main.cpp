#include <cstdio>
#include <future>
#include <numeric>
#include <vector>
#include "vec.h"

int main() {
    std::vector<long> a(1000), b(1000);
    std::iota(a.begin(), a.end(), 1);
    std::fill(b.begin(), b.end(), 2);
    auto half = std::async(std::launch::async, [&] { return dot(a.data(), b.data(), 500); });
    long rest = dot(a.data() + 500, b.data() + 500, 500);
    std::printf("dot=%ld\n", half.get() + rest);
    return 0;
}
