// Sum of the integers in [from, to).
exports.rangeSum = (from, to) => {
  let s = 0;
  for (let i = from; i < to; i++) s += i;
  return s;
};
