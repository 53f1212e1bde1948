#!/usr/bin/env python3
"""Independent reference for mixtape::data::shuffled_indices (tests/test_data.cpp pins its output).

Re-implements, from their specifications, the pieces the C++ code composes: splitmix64, std::mt19937_64
(the parameters fixed by the C++ standard, [rand.predef]), an unbiased bounded draw by rejection, and
Fisher-Yates from the last element down. Run: python3 tests/data/shuffle_reference.py
"""
M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


class MT19937_64:
    n, m = 312, 156
    a = 0xB5026F5AA96619E9
    u, d, s, b, t, c, l = 29, 0x5555555555555555, 17, 0x71D67FFFEDA60000, 37, 0xFFF7EEE000000000, 43
    f = 6364136223846793005

    def __init__(self, seed):
        self.mt = [seed & M64]
        for i in range(1, self.n):
            prev = self.mt[-1]
            self.mt.append((self.f * (prev ^ (prev >> 62)) + i) & M64)
        self.index = self.n

    def twist(self):
        upper, lower = 0xFFFFFFFF80000000, 0x7FFFFFFF
        for i in range(self.n):
            x = (self.mt[i] & upper) | (self.mt[(i + 1) % self.n] & lower)
            xa = x >> 1
            if x & 1:
                xa ^= self.a
            self.mt[i] = self.mt[(i + self.m) % self.n] ^ xa
        self.index = 0

    def __call__(self):
        if self.index >= self.n:
            self.twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> self.u) & self.d
        y ^= (y << self.s) & self.b
        y ^= (y << self.t) & self.c
        y ^= y >> self.l
        return y & M64


def draw_below(gen, bound):
    threshold = (2**64 - bound) % bound
    while True:
        r = gen()
        if r >= threshold:
            return r % bound


def shuffled_indices(n, seed, epoch):
    gen = MT19937_64(splitmix64(seed ^ splitmix64(epoch & M64)))
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = draw_below(gen, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


if __name__ == "__main__":
    # The C++ standard's check value for mt19937_64: the 10000th output of a default-seeded engine.
    g = MT19937_64(5489)
    for _ in range(9999):
        g()
    assert g() == 9981545732273789042
    for n, seed, epoch in [(10, 42, 0), (10, 42, 1), (20, 7, 3)]:
        print(f"shuffled_indices({n}, {seed}, {epoch}) = {shuffled_indices(n, seed, epoch)}")
