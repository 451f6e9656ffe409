// Helpers shared by the widget and item-model tests.
#pragma once

#include "ui/types.h"

namespace ui::test {

inline MessageData message(qint64 id, MessageRole role, const QString& text, int round) {
    MessageData m;
    m.id = id;
    m.role = role;
    m.text = text;
    m.round = round;
    return m;
}

}  // namespace ui::test
