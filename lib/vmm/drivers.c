/* drivers.c: the table of VMM drivers, chosen by the "vmm" key. */
#include <string.h>

#include "vmm.h"

const struct vm_driver *vm_driver_find(const char *name)
{
        static const struct vm_driver *const drivers[] = {&vm_driver_qemu, &vm_driver_firecracker};

        for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
                if (strcmp(drivers[i]->name, name) == 0)
                        return drivers[i];
        return NULL;
}
