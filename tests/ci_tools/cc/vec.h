#ifdef __cplusplus
extern "C" {
#endif
long dot(const long *a, const long *b, int n);
#ifdef __cplusplus
}
#endif
