; Nanobenchmark (lib/nano.inc): a CALL to a function that only does RET, the
; cheapest control transfer through the stack; no VM exit under any
; configuration, and the reference point for the costlier operations.
; Prints "nano-callret: 10000 iterations".
;
;   hvsim run guests/nano-callret.bin           (under the hypervisor)
;   hvsim run guests/nano-callret.bin --bare    (on the bare processor)
;
; SDM vol. 2: CALL (near, relative), RET (near).
%include "lib/bootsector.inc"

%define NANO_NAME "nano-callret"
%macro NANO_OPERATION 0
        call nop_function
%endmacro

bits 64
nano_setup:
        ret

nano_report:
        ret

nop_function:
        ret

%include "lib/nano.inc"
