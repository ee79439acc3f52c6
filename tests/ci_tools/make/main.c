#include <stdio.h>
#include <stdlib.h>
#include "calc.h"
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    printf("fib(%d)=%ld primes<=%d: %d\n", n, fib(n), n, primes_upto(n));
    return 0;
}
