#include "shapes.hpp"

namespace {
struct Rect : Shape {
    long w, h;
    Rect(long w, long h) : w(w), h(h) {}
    long area() const override { return w * h; }
    std::string name() const override { return "rect"; }
};
struct Square : Rect {
    explicit Square(long s) : Rect(s, s) {}
    std::string name() const override { return "square"; }
};
}  // namespace

std::vector<std::unique_ptr<Shape>> make_shapes() {
    std::vector<std::unique_ptr<Shape>> v;
    v.push_back(std::make_unique<Rect>(3, 4));
    v.push_back(std::make_unique<Square>(5));
    v.push_back(std::make_unique<Rect>(1, 9));
    return v;
}
