# Warning and sanitizer flags shared by every target of the project (not by third-party code).
add_library(roundchat_compile_options INTERFACE)
# -Wno-restrict: gcc 12 reports false -Wrestrict positives inside libstdc++'s std::string at -O3 (GCC bug 105329).
target_compile_options(roundchat_compile_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-restrict>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${ROUNDCHAT_WERROR}>>:-Werror>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${ROUNDCHAT_WERROR}>>:-Werror=all-warnings>)
if(ROUNDCHAT_SANITIZE)
    target_compile_options(roundchat_compile_options INTERFACE
        $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer>)
    target_link_options(roundchat_compile_options INTERFACE -fsanitize=address,undefined)
endif()
