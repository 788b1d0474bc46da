#include "alerts/alert_rules.h"

#include <gtest/gtest.h>

namespace shepherd {
namespace {

AlertRule rule(const std::string& cls, const std::string& code, double window_s, int count) {
  AlertRule r;
  r.name = cls + code;
  r.cls = cls;
  r.code = code;
  r.window_s = window_s;
  r.count = count;
  return r;
}

std::vector<size_t> fired_rules(const std::vector<FiredAlert>& fired) {
  std::vector<size_t> out;
  for (const auto& f : fired) out.push_back(f.rule);
  return out;
}

TEST(AlertCounter, FiresWhenTheCountFallsWithinTheWindowOncePerWindow) {
  AlertSpec spec{{rule("server_error", "", 10, 3), rule("", "QUOTA_EXHAUSTED", 300, 1)}, ""};
  AlertCounter counter(spec);
  EXPECT_TRUE(counter.observe("server_error", "SERVER_ERROR", 100).empty());
  EXPECT_TRUE(counter.observe("timeout", "TIMEOUT", 101).empty());
  EXPECT_TRUE(counter.observe("server_error", "SERVER_ERROR", 105).empty());
  EXPECT_TRUE(counter.observe("server_error", "SERVER_ERROR", 111).empty()) << "the one at 100 has left the window";
  auto fired = counter.observe("server_error", "SERVER_ERROR", 112);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].rule, 0u);
  EXPECT_EQ(fired[0].count, 3);
  EXPECT_EQ(fired[0].at, 112);
  EXPECT_TRUE(counter.observe("server_error", "SERVER_ERROR", 113).empty()) << "fired within this window";
  EXPECT_EQ(fired_rules(counter.observe("server_error", "SERVER_ERROR", 122)), std::vector<size_t>{0});
  EXPECT_EQ(fired_rules(counter.observe("quota_exhausted", "QUOTA_EXHAUSTED", 123)), std::vector<size_t>{1});
}

// An earlier run's failures still in the window count toward it: the next
// matching failure fires, with them in its count. Seeding itself fires
// nothing.
TEST(AlertCounter, SeededFailuresCountTowardTheWindow) {
  AlertSpec spec{{rule("server_error", "", 300, 10)}, ""};
  AlertCounter counter(spec);
  std::vector<double> earlier;
  for (int i = 0; i < 8; ++i) earlier.push_back(1000 + i);
  counter.seed(0, earlier);
  EXPECT_TRUE(counter.observe("server_error", "", 1100).empty()) << "9 of 10";
  EXPECT_TRUE(counter.observe("timeout", "", 1101).empty()) << "another class";
  auto fired = counter.observe("server_error", "", 1102);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].count, 10);
}

TEST(AlertCounter, SeededFailuresLeaveTheWindowAsTimeGoesOn) {
  AlertSpec spec{{rule("server_error", "", 60, 3)}, ""};
  AlertCounter counter(spec);
  counter.seed(0, {1010, 1000});  // any order
  EXPECT_TRUE(counter.observe("server_error", "", 1065).empty()) << "the one at 1000 has left";
  auto fired = counter.observe("server_error", "", 1066);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].count, 3) << "1010, 1065, 1066";
}

TEST(AlertCounter, SeedingOverTheCountFiresAtTheNextMatchUnlessItFiredWithinTheWindow) {
  AlertSpec spec{{rule("", "QUOTA_EXHAUSTED", 300, 2)}, ""};
  {
    AlertCounter counter(spec);
    counter.seed(0, {900, 950, 990});
    auto fired = counter.observe("quota_exhausted", "QUOTA_EXHAUSTED", 1000);
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0].count, 4);
  }
  {
    AlertCounter counter(spec);
    counter.fired_before(0, 995);
    counter.seed(0, {900, 950, 990});
    EXPECT_TRUE(counter.observe("quota_exhausted", "QUOTA_EXHAUSTED", 1000).empty());
    EXPECT_TRUE(counter.observe("quota_exhausted", "QUOTA_EXHAUSTED", 1294).empty());
    EXPECT_EQ(fired_rules(counter.observe("quota_exhausted", "QUOTA_EXHAUSTED", 1295)), std::vector<size_t>{0})
        << "a window after it last fired";
  }
}

TEST(AlertCounter, SeedingAnUnknownRuleIsIgnored) {
  AlertSpec spec{{rule("server_error", "", 300, 1)}, ""};
  AlertCounter counter(spec);
  counter.seed(5, {1, 2, 3});
  EXPECT_EQ(fired_rules(counter.observe("server_error", "", 10)), std::vector<size_t>{0});
}

}  // namespace
}  // namespace shepherd
