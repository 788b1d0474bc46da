#include "core/hash.h"

#include <gtest/gtest.h>

namespace shepherd {

TEST(StableHash, IsStableAcrossBuilds) {
  // Task ids derive from this: a changed value would orphan every stored result.
  EXPECT_EQ(stable_hash_hex(""), stable_hash_hex(""));
  EXPECT_EQ(stable_hash_hex("demo"), "331d1022b2a9555e");
}

TEST(StableHash, SpreadsNearbyInputs) {
  EXPECT_NE(stable_hash_hex("task 1"), stable_hash_hex("task 2"));
  EXPECT_EQ(stable_hash_hex("abc").size(), 16u);
}

}  // namespace shepherd
