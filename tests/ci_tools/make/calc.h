long fib(int n);
int primes_upto(int n);
