package demo;

final class Counter {
    static long sumOfSquares(int from, int to) {
        long s = 0;
        for (long i = from; i < to; i++) s += i * i;
        return s;
    }
}
