#include "core/redactor.h"

#include <gtest/gtest.h>

#include "core/text.h"

namespace shepherd {

namespace {

const std::string kKey = "sk-live/Ab+cD=9xYz";

std::string scrubbed(std::string text, const std::vector<std::string>& secrets = {kKey}) {
  Redactor(secrets).scrub(text);
  return text;
}

}  // namespace

TEST(Redactor, RawAndTheEncodersForms) {
  EXPECT_EQ(scrubbed("key " + kKey + " twice " + kKey), "key [redacted] twice [redacted]");
  EXPECT_EQ(scrubbed(R"({"k":"sk-live\/Ab+cD=9xYz"})"), R"({"k":"[redacted]"})");
  EXPECT_EQ(scrubbed("?key=sk-live%2FAb%2BcD%3D9xYz&x=1"), "?key=[redacted]&x=1");
}

TEST(Redactor, AnyMixOfEscapes) {
  // What a provider may write that no encoder would: one letter \u-escaped,
  // every character escaped, lower-case percent hex, escapes mixed.
  EXPECT_EQ(scrubbed(R"("\u0073k-live/Ab+cD=9xYz")"), R"("[redacted]")");
  std::string all;
  for (unsigned char c : kKey) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04X", c);
    all += buf;
  }
  EXPECT_EQ(scrubbed("<" + all + ">"), "<[redacted]>");
  EXPECT_EQ(scrubbed("sk-live%2fAb%2bcD%3d9xYz"), "[redacted]");
  EXPECT_EQ(scrubbed(R"(sk-\u006Cive%2FAb+c\u0044=9xYz.)"), "[redacted].");
  // Escapes that spell something else are left alone.
  EXPECT_EQ(scrubbed(R"(\u0073k-live/Ab+cD=9xYq %41 \/)"), R"(\u0073k-live/Ab+cD=9xYq %41 \/)");
}

TEST(Redactor, AKeysBeginningThatEndsATextCutShort) {
  EXPECT_EQ(scrubbed("body cut at sk-live/A"), "body cut at [redacted]");
  EXPECT_EQ(scrubbed("ends in sk-li"), "ends in sk-li") << "too short a piece to tell";
  EXPECT_EQ(scrubbed("sk-live/ in the middle"), "sk-live/ in the middle") << "only at the very end";
}

TEST(Redactor, ShortSecretsAreIgnored) {
  EXPECT_EQ(scrubbed("a cat sat", {"cat"}), "a cat sat");
  EXPECT_TRUE(Redactor({"abc"}).empty());
}

TEST(Redactor, ClippingNeverLeavesAPieceOfAKey) {
  Redactor::install({kKey});
  std::string text = std::string(90, 'x') + kKey + std::string(50, 'y');
  std::string clipped = clip_text(text, 100);
  EXPECT_EQ(clipped.find("sk-live"), std::string::npos) << clipped;
  EXPECT_NE(clipped.find("[redacted]"), std::string::npos) << clipped;
  Redactor::install({});
}

}  // namespace shepherd
